"""Policy-selection metrics over candidate policies (SCOPE-RL ops, arXiv 2311.18206 / 2311.18207).

The estimator ranks candidates by estimated value V̂ (descending, ties by input order); the top-k
deployment set is the first k of that ranking and its **true** values V are scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ratiolab.ope.validation import FloatArray, as_float

SHARPE_CAP = 100.0


def _pair(estimated: Any, true: Any) -> tuple[FloatArray, FloatArray]:
    est = as_float("estimated", estimated, 1)
    tru = as_float("true", true, 1)
    if est.shape != tru.shape or est.size == 0:
        raise ValueError(f"estimated/true: need equal non-empty lengths, got {est.shape} and {tru.shape}")
    return est, tru


def estimated_order(estimated: Any) -> np.ndarray:
    """Candidate indices sorted by estimated value, best first (stable for ties)."""
    return np.argsort(-as_float("estimated", estimated, 1), kind="stable")


@dataclass(frozen=True)
class TopKMetrics:
    """Metrics for k = 1..K (index k − 1). std uses ddof = 1, so std@1 and SharpeRatio@1 are NaN."""

    kth: FloatArray
    best: FloatArray
    worst: FloatArray
    mean: FloatArray
    std: FloatArray
    sharpe_ratio: FloatArray
    safety_violation_rate: FloatArray | None

    def to_dict(self) -> dict[str, list[float] | None]:
        return {
            name: None if (val := getattr(self, name)) is None else [float(x) for x in val]
            for name in ("kth", "best", "worst", "mean", "std", "sharpe_ratio", "safety_violation_rate")
        }


def top_k_metrics(
    estimated: Any,
    true: Any,
    behavior_value: float,
    *,
    safety_threshold: float | None = None,
    replace_inf: bool = False,
) -> TopKMetrics:
    """k-th, best@k, worst@k, mean@k, std@k and SharpeRatio@k = max(best@k − V(π_b), 0) / std@k.

    ``behavior_value`` is V(π_b), the on-policy value of the behaviour policy. ``replace_inf`` (off by
    default) maps ±inf SharpeRatio to 100 and clips k ≥ 2 to [0, 100], as SCOPE-RL's flag does.
    The safety-violation rate@k (share of the top-k with true value below ``safety_threshold``) is
    [inferred].
    """
    est, tru = _pair(estimated, true)
    ordered = tru[estimated_order(est)]
    n = ordered.size
    ks = np.arange(1, n + 1)
    best = np.maximum.accumulate(ordered)
    csum = np.cumsum(ordered)
    mean = csum / ks
    # ddof = 1 sample std of each prefix, computed directly for numerical safety
    std = np.array([np.std(ordered[:k], ddof=1) if k > 1 else np.nan for k in ks])
    gain = np.maximum(best - behavior_value, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = gain / std
    if replace_inf:
        sharpe[1:] = np.clip(
            np.nan_to_num(sharpe[1:], nan=np.nan, posinf=SHARPE_CAP, neginf=SHARPE_CAP), 0, SHARPE_CAP
        )
    unsafe = None
    if safety_threshold is not None:
        unsafe = np.cumsum(ordered < safety_threshold) / ks
    return TopKMetrics(
        kth=ordered,
        best=best,
        worst=np.minimum.accumulate(ordered),
        mean=mean,
        std=std,
        sharpe_ratio=sharpe,
        safety_violation_rate=unsafe,
    )


def regret_at_k(estimated: Any, true: Any, k: int = 1) -> float:
    """Sum of the k best true values − sum of the true values of the estimated top-k."""
    est, tru = _pair(estimated, true)
    if not 1 <= k <= est.size:
        raise ValueError(f"k: must be in [1, {est.size}], got {k}")
    return float(np.sort(tru)[::-1][:k].sum() - tru[estimated_order(est)][:k].sum())


def mse(estimated: Any, true: Any) -> float:
    """mean((V̂ − V)²) over candidates."""
    est, tru = _pair(estimated, true)
    return float(np.mean((est - tru) ** 2))


def nmse(estimated: Any, true: Any) -> float:
    """MSE / mean((V − mean V)²): 1 means as good as predicting the mean true value. [inferred]

    The normaliser is the spread of the true values, which makes the metric scale-free; it is NaN
    when all true values are equal.
    """
    est, tru = _pair(estimated, true)
    spread = float(np.mean((tru - tru.mean()) ** 2))
    return mse(est, tru) / spread if spread > 0 else float("nan")


def _ranks(x: FloatArray) -> FloatArray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(1, x.size + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def rank_correlation(estimated: Any, true: Any) -> float:
    """Spearman rank correlation between estimated and true values (NaN if either is constant)."""
    est, tru = _pair(estimated, true)
    re, rt = _ranks(est) - (est.size + 1) / 2, _ranks(tru) - (tru.size + 1) / 2
    denom = np.sqrt((re**2).sum() * (rt**2).sum())
    return float((re * rt).sum() / denom) if denom > 0 else float("nan")


def type_error_rates(estimated: Any, true: Any, safety_threshold: float) -> tuple[float, float]:
    """(type I, type II) error rates of the safe/unsafe call at ``safety_threshold``.

    Type I = #(truly safe, estimated unsafe)/#(truly safe); type II = #(truly unsafe, estimated
    safe)/#(truly unsafe); each is 0 when its denominator is 0. Safe means value >= threshold.
    """
    est, tru = _pair(estimated, true)
    safe_true, safe_est = tru >= safety_threshold, est >= safety_threshold
    type1 = float((safe_true & ~safe_est).sum() / safe_true.sum()) if safe_true.any() else 0.0
    type2 = float((~safe_true & safe_est).sum() / (~safe_true).sum()) if (~safe_true).any() else 0.0
    return type1, type2
