"""Supervised pre-training on task demonstrations (teacher forcing, loss on completion tokens only)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ratiolab import tasks
from ratiolab.config import ConfigError, check_fields, check_range
from ratiolab.engines.hf_engine import encode_prompt
from ratiolab.engines.sampling import position_ids
from ratiolab.policies.evaluate import accuracy
from ratiolab.policies.model import PRESETS, build_policy, load_policy, n_params
from ratiolab.tasks import Problem, Task


@dataclass(frozen=True)
class PretrainConfig:
    """Demo pre-training settings.

    ``model``: a local Hugging Face causal-LM folder (``save_pretrained``: model and tokenizer, any family
    ``AutoModelForCausalLM`` loads, e.g. GPT-2, Llama, Qwen2) to continue from instead of a fresh ``preset``
    policy (``preset`` is then unused). Defaults: ``arithmetic`` level 2 (2-digit ± 1-digit, 1-digit ``*``),
    preset ``tiny``; 600 steps of batch 64 leave the model partly trained — about 30-60 % held-out greedy accuracy,
    room for RL to improve — in about a minute on one CPU core. ``lr`` rises linearly for
    ``warmup`` steps, then decays by cosine (over ``steps``) to 10 % of its peak.

    Stopping rule: with ``stop_pass1`` = p (default ``None``: run all ``steps``), every ``check_every``
    steps (default 10) the model answers ``check_size`` (default 128) train-split problems, one sample
    each at temperature 1, drawn once with a seed no training batch uses (never test-split problems);
    training stops at the first check whose solved share (pass@1) is >= p, or after ``steps``. Where
    pre-training lands then depends on p, not on the seed or the floating-point reduction order.
    """

    task: str = "arithmetic"
    level: int = 2
    preset: str = "tiny"
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.0
    seed: int = 0
    model: str | None = None
    stop_pass1: float | None = None
    check_every: int = 10
    check_size: int = 128

    def validate(self) -> None:
        """Reject settings that cannot train (``ConfigError`` naming the field) before any work."""
        check_fields(self)
        if self.preset not in PRESETS:
            raise ConfigError(f"preset = {self.preset!r} is not one of {list(PRESETS)}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} = {getattr(self, name)} must be a positive integer")
        check_range("lr", self.lr, "(0, inf)")
        check_range("warmup", self.warmup, "[0, inf)")
        check_range("weight_decay", self.weight_decay, "[0, inf)")
        if self.stop_pass1 is not None:
            check_range("stop_pass1", self.stop_pass1, "(0, 1]", "a share of problems solved; None: no early stop")
        for name in ("check_every", "check_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} = {getattr(self, name)} must be a positive integer")

    def build_task(self) -> Task:
        """The demo task named by ``task`` at difficulty ``level``."""
        return tasks.get(self.task, level=self.level)


@dataclass(frozen=True)
class PretrainResult:
    """What ``pretrain`` did: where it saved, the steps it ran, final loss, parameter count, wall time and
    the last stopping-rule check (train-split pass@1; ``None`` without ``stop_pass1``)."""

    out_dir: str
    steps: int
    final_loss: float
    n_params: int
    seconds: float
    check_pass1: float | None = None


def demonstration_batch(
    tokenizer: PreTrainedTokenizerBase, task: Task, problems: list[Problem]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, labels)`` right-padded; labels are -100 outside the completion.

    The prompt is encoded as the RL sampler encodes it (:func:`~ratiolab.engines.hf_engine.encode_prompt`: a
    chat prompt through the tokenizer's chat template, else with special tokens, BOS), the demonstration
    without special tokens, followed by EOS.
    """
    rows: list[tuple[list[int], int]] = []
    for problem in problems:
        prompt = encode_prompt(tokenizer, problem.prompt)
        completion = tokenizer(task.demonstration(problem), add_special_tokens=False)["input_ids"]
        rows.append((prompt + completion + [int(tokenizer.eos_token_id)], len(prompt)))
    width = max(len(ids) for ids, _ in rows)
    pad = int(tokenizer.pad_token_id)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
    return input_ids, attention, labels


def completion_loss(
    model: PreTrainedModel, input_ids: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean next-token cross-entropy over completion tokens (labels != -100)."""
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids(attention)).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def _lr_factor(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def pretrain(
    task: Task, out_dir: str | Path, cfg: PretrainConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> PretrainResult:
    """Train a fresh ``cfg.preset`` policy (or the checkpoint in ``cfg.model``) on ``task`` demonstrations; save
    model + tokenizer atomically (``save_pretrained``: ``AutoModelForCausalLM.from_pretrained`` loads it back).
    ``progress(step, loss)`` is called after each step (1-based). With ``cfg.stop_pass1`` it stops at the
    first check that reaches it (:class:`PretrainConfig`).

    Problems (training and checks) come from the task's train split only. A bad model folder (before any step),
    chat prompts without a chat template or a demonstration longer than the model's context (at the step that
    meets it) is a one-line ``ConfigError``. ``out_dir`` is replaced as a whole: the checkpoint is written to a
    temporary sibling folder, then renamed into place.
    """
    cfg = cfg if cfg is not None else PretrainConfig()
    cfg.validate()
    start = time.perf_counter()
    model, tokenizer = build_policy(cfg.preset, seed=cfg.seed) if cfg.model is None else load_policy(cfg.model)
    problems = task.sample(cfg.steps * cfg.batch_size, split="train", seed=cfg.seed)
    limit = getattr(model.config, "max_position_embeddings", None)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    checks = task.sample(cfg.check_size, split="train", seed=-1 - cfg.seed) if cfg.stop_pass1 is not None else []
    loss, check, done = torch.tensor(float("nan")), None, 0
    for done in range(1, cfg.steps + 1):
        try:  # a chat prompt needs the tokenizer's chat template (one line at the first step)
            batch = demonstration_batch(tokenizer, task, problems[(done - 1) * cfg.batch_size : done * cfg.batch_size])
        except ValueError as err:
            raise ConfigError(f"task {cfg.task}: {err}") from err
        if limit is not None and batch[0].shape[1] > limit:
            raise ConfigError(f"task {cfg.task}: a demonstration of {batch[0].shape[1]} tokens (prompt, completion, "
                              f"EOS) exceeds the model's context of {limit} positions (max_position_embeddings)")
        loss = completion_loss(model, *batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if progress is not None:
            progress(done, float(loss.detach()))
        if cfg.stop_pass1 is not None and done % cfg.check_every == 0:
            model.eval()
            check = accuracy(model, tokenizer, task, checks, greedy=False, seed=cfg.seed + done)
            model.train()
            if check >= cfg.stop_pass1:
                break
    model.eval()
    result = PretrainResult(
        out_dir=str(out_dir), steps=done, final_loss=float(loss.detach()), n_params=n_params(model),
        seconds=time.perf_counter() - start, check_pass1=check,
    )
    save_atomically(model, tokenizer, Path(out_dir), {"config": asdict(cfg), "result": asdict(result)})
    return result


def save_atomically(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path, info: dict[str, object],
    info_name: str = "pretrain.json",
) -> None:
    """``save_pretrained`` model and tokenizer (plus ``info`` as ``info_name``) into a temp dir, then rename."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / info_name).write_text(json.dumps(info, indent=2))
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
