"""PF-PPO: policy filtration, and the R^2 rule that picks a filter (arXiv 2409.06957; docs/methods/rlhf.md §5).

Of the N responses to one prompt only some enter PPO (standard GAE, policy and value losses):

| strategy | keeps | source |
| --- | --- | --- |
| ``br`` (best-random) | the max-reward response and one other, uniformly drawn | [verified: code] |
| ``bon`` (best-of-N) | the max-reward response | [secondary source] |
| ``bw`` (best-worst) | the max- and the min-reward responses | [secondary source] |

Groups are prompt ids (``group_ids``), not micro-batches. Ties go to the first index. To choose a filter,
on a calibration set with RM rewards and ground-truth scores (e.g. unit-test pass rates): filter, fit
``score ~ a reward + b`` on the kept samples, and take the strategy with the highest
``R^2 = 1 - SS_res / SS_tot`` (for a least-squares line, the squared Pearson correlation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ratiolab.rewards.checks import finite, vector

STRATEGIES = ("br", "bon", "bw")


def filter_responses(
    rewards: torch.Tensor, group_ids: torch.Tensor, strategy: str, *, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``[B]`` bool mask of the responses ``strategy`` keeps from each prompt group of ``[B]`` rewards."""
    if strategy not in STRATEGIES:
        raise ValueError(f"filter_responses: strategy must be one of {STRATEGIES}, got {strategy!r}")
    vector("filter_responses", "rewards", rewards)
    if group_ids.shape != rewards.shape or group_ids.is_floating_point():
        raise ValueError(f"filter_responses: group_ids must be an integer [{rewards.numel()}] tensor (the prompt of "
                         f"each response), got {tuple(group_ids.shape)} {group_ids.dtype}")
    finite("filter_responses", "rewards", rewards)
    keep = torch.zeros_like(rewards, dtype=torch.bool)
    for g in torch.unique(group_ids):
        idx = (group_ids == g).nonzero().squeeze(-1)
        r = rewards[idx]
        best = int(torch.argmax(r))
        keep[idx[best]] = True
        if strategy == "bw":
            keep[idx[int(torch.argmin(r))]] = True
        elif strategy == "br" and idx.numel() > 1:
            others = torch.cat([idx[:best], idx[best + 1:]])
            keep[others[int(torch.randint(others.numel(), (), generator=generator))]] = True
    return keep


def r_squared(rewards: torch.Tensor, scores: torch.Tensor) -> float:
    """``R^2`` of the least-squares line ``scores ~ a rewards + b`` (0 when the rewards are constant)."""
    vector("r_squared", "rewards", rewards)
    vector("r_squared", "scores", scores, rewards.numel())
    finite("r_squared", "rewards", rewards)
    finite("r_squared", "scores", scores)
    x, y = rewards.double() - rewards.double().mean(), scores.double() - scores.double().mean()
    ss_tot = float((y * y).sum())
    if rewards.numel() < 2 or ss_tot == 0.0:
        raise ValueError("r_squared: needs >= 2 samples whose scores are not all equal (SS_tot = 0); "
                         "use a larger calibration set")
    sxx = float((x * x).sum())
    slope = float((x * y).sum()) / sxx if sxx > 0 else 0.0
    return 1.0 - float(((y - slope * x) ** 2).sum()) / ss_tot


def select_filter(
    rewards: torch.Tensor, scores: torch.Tensor, group_ids: torch.Tensor, strategies: Sequence[str] = STRATEGIES,
    *, generator: torch.Generator | None = None,
) -> tuple[str, dict[str, float]]:
    """The strategy whose kept calibration samples have the highest ``R^2``, and every strategy's ``R^2``."""
    if not strategies:
        raise ValueError("select_filter: strategies is empty; pass some of " + ", ".join(STRATEGIES))
    r2 = {}
    for s in strategies:
        keep = filter_responses(rewards, group_ids, s, generator=generator)
        r2[s] = r_squared(rewards[keep], scores[keep])
    return max(r2, key=lambda s: r2[s]), r2
