"""``ratiolab rm train``: a Bradley-Terry reward model on preference pairs, or PPO-M's calibrated variant.

``loss = bt``: ``mean(-log sigma(r(x, y_w) - r(x, y_l) - margin))`` (Bradley-Terry). ``loss = crm`` (PPO-M,
arXiv 2410.09724, docs/methods/rlhf.md §4): each response also appears with a stated high and low confidence,
``"<response> Confidence: 9"`` / ``"... Confidence: 2"`` (the values are [inferred]; the paper's data set's
are unverified), and ``rewards.crm_loss`` ranks a confident chosen answer above an unconfident one and an
unconfident rejected answer above a confident one (``crm_variant``); PPO-M starts it from a trained RM
(``init`` = that folder). Training pairs come from the task's train split, held-out pairs from its test split
(without label noise, so the held-out accuracy measures agreement with the verifier). The model is saved with
``save_pretrained`` (and its tokenizer) into a temporary sibling folder renamed into place.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ratiolab import tasks
from ratiolab.config import ConfigError, check_fields, check_range
from ratiolab.policies.model import PRESETS
from ratiolab.policies.pretrain import save_atomically
from ratiolab.reward_model.model import INFO, build_reward_model, encode_texts, reward_scores
from ratiolab.reward_model.pairs import PreferencePair, generate_pairs, read_pairs
from ratiolab.rewards.bradley_terry import CRM_VARIANTS, bradley_terry_loss, crm_loss

#: the stated confidences of PPO-M's verbalised responses (high, low) [inferred]
CONFIDENCES = (9, 2)


@dataclass(frozen=True)
class RMTrainConfig:
    """Reward-model training settings.

    ``task``/``task_params``: the text task the pairs come from (``n_pairs`` train pairs with ``label_noise``,
    ``eval_pairs`` held-out pairs); ``pairs``: a pair file (``.jsonl``/``.parquet``) to train on instead.
    ``init``: a policy folder whose trunk the RM starts from (or an RM folder, e.g. PPO-M's base RM), else a
    fresh ``preset`` trunk. ``steps`` AdamW steps of ``batch_size`` pairs at ``lr`` (constant after
    ``warmup`` linear steps), grad-norm clip 1. ``ensemble`` > 1 trains that many members from seeds
    ``seed, seed + 1, ...`` (different heads, pair order and, for a fresh trunk, initialisation) into
    ``OUT/member-k``. Defaults: 600 steps of 32 pairs at lr 3e-4 (about half a minute per tiny member on one
    CPU core; from the pre-trained tiny policy, held-out pair accuracy about 0.6-0.7, an imperfect RM).
    """

    task: str = "arithmetic"
    task_params: dict[str, Any] = field(default_factory=dict)
    pairs: str | None = None
    n_pairs: int = 4000
    eval_pairs: int = 200
    label_noise: float = 0.0
    init: str | None = None
    preset: str = "tiny"
    loss: Literal["bt", "crm"] = "bt"
    crm_variant: str = "crm"
    margin: float = 0.0
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 20
    weight_decay: float = 0.0
    seed: int = 0
    ensemble: int = 1

    def validate(self) -> None:
        """``ConfigError`` naming the field, before any work."""
        check_fields(self)
        if self.preset not in PRESETS:
            raise ConfigError(f"preset = {self.preset!r} is not one of {list(PRESETS)}")
        if self.crm_variant not in CRM_VARIANTS:
            raise ConfigError(f"crm_variant = {self.crm_variant!r} is not one of {list(CRM_VARIANTS)}")
        for name in ("n_pairs", "eval_pairs", "steps", "batch_size", "ensemble"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} = {getattr(self, name)} must be a positive integer")
        check_range("label_noise", self.label_noise, "[0, 1]", "the probability a pair's labels flip")
        check_range("lr", self.lr, "(0, inf)")
        check_range("warmup", self.warmup, "[0, inf)")
        check_range("weight_decay", self.weight_decay, "[0, inf)")
        if self.pairs is not None and self.label_noise:
            raise ConfigError("label_noise applies to generated pairs; a pair file (pairs=...) holds its own labels")
        try:
            tasks.get(self.task, **self.task_params)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"task {self.task!r} / task_params {self.task_params}: {err}") from err


@dataclass(frozen=True)
class RMTrainResult:
    """Where the RM was saved, its first and last training loss and held-out pair accuracy."""

    out_dir: str
    first_loss: float
    final_loss: float
    eval_accuracy: float
    seconds: float


def pair_scores(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, pairs: list[PreferencePair], suffix: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B]`` scores of the chosen and the rejected responses (each with ``suffix`` appended)."""
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen + suffix for p in pairs] + [p.rejected + suffix for p in pairs]
    scores = reward_scores(model, *encode_texts(tok, prompts, responses))
    return scores[: len(pairs)], scores[len(pairs):]


@torch.no_grad()
def pair_accuracy(model: PreTrainedModel, tok: PreTrainedTokenizerBase, pairs: list[PreferencePair],
                  batch_size: int = 256) -> float:
    """Share of ``pairs`` whose chosen response the model scores above the rejected one."""
    model.eval()
    hits = 0
    for i in range(0, len(pairs), batch_size):
        chosen, rejected = pair_scores(model, tok, pairs[i:i + batch_size])
        hits += int((chosen > rejected).sum())
    return hits / len(pairs)


def rm_loss(model: PreTrainedModel, tok: PreTrainedTokenizerBase, batch: list[PreferencePair],
            cfg: RMTrainConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The configured loss of one batch of pairs (module docstring)."""
    if cfg.loss == "bt":
        return bradley_terry_loss(*pair_scores(model, tok, batch), margin=cfg.margin)
    hi, lo = (f" Confidence: {c}" for c in CONFIDENCES)
    cwh, rwh = pair_scores(model, tok, batch, hi)
    cwl, rwl = pair_scores(model, tok, batch, lo)
    plain = pair_scores(model, tok, batch) if cfg.crm_variant == "combined" else (None, None)
    return crm_loss(cwh, cwl, rwh, rwl, variant=cfg.crm_variant, chosen=plain[0], rejected=plain[1],
                    margin=cfg.margin)


def train_reward_model(cfg: RMTrainConfig, out_dir: str | Path) -> list[RMTrainResult]:
    """Train ``cfg.ensemble`` reward model(s) into ``out_dir`` (members in ``out_dir/member-k`` when > 1)."""
    cfg.validate()
    task = tasks.get(cfg.task, **cfg.task_params)
    held_out = generate_pairs(task, cfg.eval_pairs, split="test", seed=cfg.seed)
    train_pairs = (read_pairs(cfg.pairs) if cfg.pairs is not None
                   else generate_pairs(task, cfg.n_pairs, split="train", seed=cfg.seed, label_noise=cfg.label_noise))
    out = Path(out_dir)
    if cfg.ensemble == 1:
        return [_train_one(cfg, train_pairs, held_out, out)]
    return [_train_one(replace(cfg, seed=cfg.seed + k), train_pairs, held_out, out / f"member-{k}")
            for k in range(cfg.ensemble)]


def _train_one(cfg: RMTrainConfig, train_pairs: list[PreferencePair], held_out: list[PreferencePair],
               out: Path) -> RMTrainResult:
    start = time.perf_counter()
    model, tok = build_reward_model(cfg.init, cfg.preset, cfg.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(cfg.warmup, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    order = torch.randperm(len(train_pairs), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    losses: list[float] = []
    for step in range(cfg.steps):
        idx = [order[(step * cfg.batch_size + i) % len(order)] for i in range(cfg.batch_size)]
        loss, _ = rm_loss(model, tok, [train_pairs[i] for i in idx], cfg)
        if not math.isfinite(float(loss.detach())):
            raise ValueError(f"reward-model loss is {float(loss)} at step {step + 1}; lower lr (now {cfg.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
    accuracy = pair_accuracy(model, tok, held_out)
    k = max(1, min(20, cfg.steps // 5))  # first and last losses averaged over a few steps
    result = RMTrainResult(str(out), sum(losses[:k]) / k, sum(losses[-k:]) / k, accuracy,
                           time.perf_counter() - start)
    model.eval()
    save_atomically(model, tok, out, {"config": asdict(cfg), "result": asdict(result)}, info_name=INFO)
    return result


def read_info(folder: str | Path) -> dict[str, Any]:
    """The training summary saved next to a reward model (``{}`` when it has none)."""
    file = Path(folder) / INFO
    return json.loads(file.read_text()) if file.is_file() else {}
