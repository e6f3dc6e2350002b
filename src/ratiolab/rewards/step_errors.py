"""SCOPE's error localisation (arXiv 2602.24110, docs/methods/rlhf.md §13; [verified: paper], abstract only).

A process reward model scores each reasoning step of a failed rollout; the first step whose score falls below
``threshold`` is the first error. The steps before it are the prefix to keep, and the rollout is regenerated
from it. Only this utility is built: the PRM threshold, the correction source and the weighting of the
rectified tokens are not published.
"""

from __future__ import annotations

import torch


def first_error_step(
    step_scores: torch.Tensor, threshold: float = 0.5, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B]`` index of each row's first valid step with ``score < threshold``; ``-1`` where every valid step passes.

    ``step_scores``: ``[B, S]`` PRM scores of the steps; ``mask``: ``[B, S]`` 1 on real steps (default: all).
    The 0.5 default is [inferred].
    """
    if step_scores.dim() != 2:
        raise ValueError(f"step_scores must be [B, S], got shape {tuple(step_scores.shape)}")
    valid = torch.ones_like(step_scores, dtype=torch.bool) if mask is None else mask > 0
    if valid.shape != step_scores.shape:
        raise ValueError(f"mask has shape {tuple(valid.shape)}, step_scores {tuple(step_scores.shape)}: give one "
                         "mask value per step")
    bad = (step_scores < threshold) & valid
    first = bad.int().argmax(dim=1)
    return torch.where(bad.any(dim=1), first, torch.full_like(first, -1))
