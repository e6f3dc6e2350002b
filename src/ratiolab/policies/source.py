"""Where a run's policy comes from: a local checkpoint folder, or a pre-trained base cached by its recipe."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ratiolab import tasks
from ratiolab.config import to_dict
from ratiolab.config.train import TrainConfig
from ratiolab.policies.pretrain import PretrainConfig, pretrain


def policy_source(cfg: TrainConfig, log: Callable[[str], None] = print,
                  progress: Callable[[int, float], None] | None = None) -> Path:
    """The checkpoint folder to start from: ``policy.model``, or the cached pre-trained base (pre-trained on
    the task's demonstrations on first use, under ``policy.cache_dir``, keyed by the task and every pre-training
    setting: preset, steps, lr, batch size, stopping rule and the run's seed, which also seeds the pre-training;
    ``progress(step, loss)`` follows it)."""
    p = cfg.policy
    if p.model is not None:
        return Path(p.model)
    pre = PretrainConfig(preset=p.preset, steps=p.pretrain_steps, lr=p.pretrain_lr, batch_size=p.pretrain_batch_size,
                         seed=cfg.seed, stop_pass1=p.pretrain_stop_pass1, check_every=p.pretrain_check_every)
    key = json.dumps({"task": to_dict(cfg.task), "pretrain": asdict(pre)})
    digest = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    folder = Path(p.cache_dir) / "pretrained" / f"{cfg.task.name}-{p.preset}-{digest}"
    if not (folder / "config.json").is_file():
        log(f"pre-training a {p.preset} policy on {cfg.task.name} demonstrations -> {folder}")
        task = tasks.get(cfg.task.name, **cfg.task.params)
        result = pretrain(task, folder, pre, progress=progress)
        stop = "" if result.check_pass1 is None else f", train-split pass@1 {result.check_pass1:.1%}"
        log(f"pre-trained in {result.seconds:.1f} s, {result.steps} steps (final loss {result.final_loss:.3f}{stop})")
    return folder
