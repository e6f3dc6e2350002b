"""Held-out accuracy of a policy on a task."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.tasks import Problem, Task


def accuracy(
    engine_or_model: HFEngine | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    problems: list[Problem],
    greedy: bool = True,
    max_new_tokens: int = 16,
    seed: int = 0,
) -> float:
    """Fraction of ``problems`` whose completion the task's verifier scores 1.0 (single-turn tasks).

    A bare model is wrapped in an fp32 ``HFEngine``; sampling (``greedy=False``) uses temperature 1.
    """
    if task.multi_turn:
        raise ValueError(f"task {task.name!r} is multi-turn; evaluate it with engines.generate_turns")
    if not problems:
        raise ValueError("problems is empty")
    engine = (
        engine_or_model
        if isinstance(engine_or_model, HFEngine)
        else HFEngine(engine_or_model, tokenizer, dtype=torch.float32)
    )
    rollout = engine.generate(
        [p.prompt for p in problems], SamplingParams(greedy=greedy, max_new_tokens=max_new_tokens), seed=seed
    )
    hits = [task.reward(p, text) >= 1.0 for p, text in zip(problems, rollout.texts, strict=True)]
    return sum(hits) / len(hits)
