"""Verifiable text tasks, registered by name: ``ratiolab.tasks.get("arithmetic", level=2)``."""

from __future__ import annotations

from ratiolab.tasks.arithmetic import Arithmetic
from ratiolab.tasks.base import SPLITS, MultiTurnTask, Problem, ProceduralTask, Split, Task, completion_tokens
from ratiolab.tasks.countdown import Countdown
from ratiolab.tasks.guess import GuessNumber
from ratiolab.tasks.jsonl import JsonlTask

REGISTRY: dict[str, type[Task]] = {cls.name: cls for cls in (Arithmetic, Countdown, GuessNumber, JsonlTask)}


def get(name: str, **params: object) -> Task:
    """Build the task registered as ``name`` with constructor ``params``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**params)


def names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(REGISTRY)


__all__ = [
    "SPLITS", "Arithmetic", "Countdown", "GuessNumber", "JsonlTask", "MultiTurnTask", "Problem",
    "ProceduralTask", "Split", "Task", "completion_tokens", "get", "names",
]
