"""Expert (off-policy) tokens from a task's demonstrations: whole teacher-forced responses and prefixes.

``demonstration_ids`` tokenizes ``task.demonstration(problem)`` (the task's correct completion; for
arithmetic, the answer). ``expert_rollout`` lays the demonstrations out as a :class:`Rollout` whose tokens
are forced, not sampled (CHORD's SFT rows, arXiv 2508.11408): ``mask`` 1 on the demonstration and its EOS,
``behav_logp`` 0 (no sampling distribution), ``version`` the engine's. ``prefix_length`` is the number of
demonstration tokens a PrefixRL problem starts from (arXiv 2601.18795, [secondary source]).
"""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedTokenizerBase

from ratiolab.engines import HFEngine, Rollout
from ratiolab.tasks import Problem, Task


def demonstration_ids(tokenizer: PreTrainedTokenizerBase, task: Task, problems: list[Problem]) -> list[list[int]]:
    """Token ids of each problem's demonstration (no special tokens)."""
    return [list(tokenizer(task.demonstration(p), add_special_tokens=False)["input_ids"]) for p in problems]


def expert_rollout(engine: HFEngine, task: Task, problems: list[Problem]) -> Rollout:
    """One teacher-forced row per problem: the prompt, then its demonstration and EOS (right-padded)."""
    eos, pad = int(engine.tokenizer.eos_token_id), int(engine.tokenizer.pad_token_id)
    rows = [[*ids, eos] for ids in demonstration_ids(engine.tokenizer, task, problems)]
    width = max(len(r) for r in rows)
    prompt_ids, prompt_mask = engine.encode_prompts([p.prompt for p in problems])
    tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    mask = (torch.arange(width) < lengths[:, None]).float()
    version = torch.where(mask > 0, engine.version, -1)
    return Rollout(
        prompts=[p.prompt for p in problems], prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=tokens,
        mask=mask, behav_logp=torch.zeros_like(mask), version=version, finished=torch.ones(len(rows), dtype=torch.bool),
        lengths=lengths, texts=[task.demonstration(p) for p in problems],
    )


def prefix_length(n_tokens: int, fraction: float) -> int:
    """``h = clamp(floor(fraction n), 1, n - 1)`` demonstration tokens of ``n``, so the policy writes at least one
    (0 when ``n < 2``: no prefix, as DR-PO's roll-in)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"prefix.fraction = {fraction} must lie in (0, 1)")
    if n_tokens < 2:
        return 0
    return min(max(math.floor(fraction * n_tokens), 1), n_tokens - 1)
