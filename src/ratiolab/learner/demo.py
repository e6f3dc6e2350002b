"""``ratiolab demo``: pre-train a tiny policy on arithmetic (cached), RL-train it, show before/after.

The embedded defaults (:data:`DEMO_SETTINGS`) are what ``make demo`` runs on a fresh machine in
about two minutes on 2 CPU cores, pre-training included. The issue's target (held-out greedy
accuracy +20 points over the base) is not met yet: at lr 1e-4 RL raises the sampled training
reward (about 0.67 -> 0.80) without a held-out gain, and at lr >= 5e-4 a fresh AdamW's first,
sign-like steps damage the 0.4 M-parameter model (plain teacher-forced fine-tuning on the same
correct samples collapses the same way: 56 % -> 23 % in 10 steps at lr 1e-3).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from ratiolab.config import override
from ratiolab.learner.config import TrainConfig

#: The demo run (``--set``-style assignments over :class:`TrainConfig`).
DEMO_SETTINGS = (
    "task.name=arithmetic",
    "task.params={level: 2}",
    "policy.preset=tiny",
    "policy.pretrain_steps=600",
    "algo.objective=grpo",
    "algo.advantage=grpo",
    "algo.lr=1e-4",
    "algo.warmup_steps=10",
    "steps=60",
    "eval_every=10",
    "threads=1",
)


def demo_config(fresh: bool = False) -> TrainConfig:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = [*DEMO_SETTINGS, f"run_dir=runs/demo-{stamp}"]
    if fresh:
        settings.append(f"policy.cache_dir=.cache/ratiolab-fresh-{stamp}")
    return override(TrainConfig(), settings)


def run_demo(console: Console, run_training: Callable[[TrainConfig, bool], Any], fresh: bool = False) -> int:
    """Run the demo; the last printed line is ``held-out accuracy: base X% -> trained Y%``."""
    cfg = demo_config(fresh)
    start = time.perf_counter()
    result = run_training(cfg, False)
    table = Table(title=f"ratiolab demo: {cfg.algo.objective} on {cfg.task.name} ({cfg.policy.preset} policy)")
    for col in ("", "held-out accuracy", "problems"):
        table.add_column(col)
    table.add_row("pre-trained base", f"{result.base_accuracy:.1%}", str(cfg.eval_size))
    table.add_row(f"after {cfg.steps} RL steps", f"{result.final_accuracy:.1%}", str(cfg.eval_size))
    console.print(table)
    console.print(f"wall time {time.perf_counter() - start:.0f} s · report: {result.report}")
    console.print(f"held-out accuracy: base {result.base_accuracy:.0%} -> trained {result.final_accuracy:.0%}")
    return 0
