"""Reward-model ensembles: mean, worst-case (WCO) and uncertainty-weighted (UWO) scores (Coste et al.,
arXiv 2310.02743; docs/methods/rlhf.md §9).

For k RM scores R_1..R_k of one response: ``mean_i R_i``; WCO ``min_i R_i``; UWO ``mean_i R_i - lam Var_i(R_i)``
(a variance, not a std). The ensemble value replaces the single RM score (PPO or best-of-n). The reference
code uses the unbiased variance with lam 0.1 on the PPO path and the population variance with lam 0.5 for
best-of-n (``var_ddof``; presets :data:`UWO_PPO`, :data:`UWO_BON`). [verified: code] tlc4418/llm_optimization.

A non-finite member score is an error by default; ``nonfinite="zero"`` gives that response reward 0 and
weight 0 (the caller drops it from the loss) and counts it in ``ensemble/nonfinite``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

MODES = ("mean", "wco", "uwo")
NONFINITE = ("raise", "zero")
#: UWO parameters of the reference PPO path and best-of-n path.
UWO_PPO: dict[str, Any] = {"uwo_coef": 0.1, "var_ddof": 1}
UWO_BON: dict[str, Any] = {"uwo_coef": 0.5, "var_ddof": 0}


@dataclass(frozen=True)
class EnsembleScore:
    """``reward`` ``[B]`` (0 where zero-weighted), ``weight`` ``[B]`` (1 valid, 0 zero-weighted) and metrics."""

    reward: torch.Tensor
    weight: torch.Tensor
    metrics: dict[str, torch.Tensor]


def ensemble_reward(
    scores: torch.Tensor, mode: str = "uwo", *, uwo_coef: float = 0.1, var_ddof: int = 1, nonfinite: str = "raise",
) -> EnsembleScore:
    """Combine ``[B, k]`` member scores (one column per reward model) by ``mode`` (module docstring); metrics
    ``ensemble/std`` (mean member std, the disagreement) and ``ensemble/nonfinite`` (zero-weighted rows)."""
    if mode not in MODES:
        raise ValueError(f"ensemble_reward: mode must be one of {MODES}, got {mode!r}")
    if nonfinite not in NONFINITE:
        raise ValueError(f"ensemble_reward: nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or not scores.is_floating_point():
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"ensemble_reward: scores must be a float [B, k] tensor (one column per RM), got {got}")
    if var_ddof not in (0, 1):
        raise ValueError(f"ensemble_reward: var_ddof must be 0 (population) or 1 (unbiased), got {var_ddof}")
    if scores.shape[1] <= var_ddof:
        raise ValueError(f"ensemble_reward: {scores.shape[1]} reward model(s) cannot give a variance with "
                         f"var_ddof={var_ddof}; use k >= 2 members")
    if not uwo_coef >= 0:
        raise ValueError(f"ensemble_reward: uwo_coef must be >= 0, got {uwo_coef}")
    ok = torch.isfinite(scores).all(-1)
    n_bad = int((~ok).sum())
    if n_bad and nonfinite == "raise":
        raise ValueError(f"ensemble_reward: {n_bad} row(s) of scores have a non-finite member score; fix the reward "
                         "model or pass nonfinite='zero' to zero-weight those responses")
    s = torch.where(ok[:, None], scores, 0.0)
    var = s.var(-1, correction=var_ddof)
    value = {"mean": lambda: s.mean(-1), "wco": lambda: s.amin(-1), "uwo": lambda: s.mean(-1) - uwo_coef * var}[mode]()
    weight = ok.to(scores.dtype)
    metrics = {"ensemble/std": (var.sqrt() * weight).sum() / weight.sum().clamp(min=1.0),
               "ensemble/nonfinite": scores.new_tensor(float(n_bad))}
    return EnsembleScore(value * weight, weight, metrics)
