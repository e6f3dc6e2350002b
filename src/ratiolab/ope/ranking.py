"""Rank candidate policies from logged feedback with one estimator and score the ranking.

Candidates are action distributions (n, K) or (n, K, len_list), or callables mapping the feedback
to one; no model code is involved. When true values are known (given, or computed from the
synthetic ground truth ``expected_reward``), the report adds SharpeRatio@k and the other
selection metrics of :mod:`ratiolab.ope.selection` (arXiv 2311.18207).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ratiolab.ope.api import Estimate, estimate
from ratiolab.ope.data.schema import LoggedBanditFeedback
from ratiolab.ope.data.synthetic import policy_value
from ratiolab.ope.selection import (
    TopKMetrics,
    estimated_order,
    nmse,
    rank_correlation,
    regret_at_k,
    top_k_metrics,
)

Candidate = np.ndarray | Callable[[LoggedBanditFeedback], np.ndarray]


@dataclass(frozen=True)
class PolicyRanking:
    """Candidates best-first by estimate; selection metrics when true values are known."""

    estimator: str
    order: list[str]
    estimates: dict[str, Estimate]
    behavior_value: float
    true_values: dict[str, float] | None = None
    top_k: TopKMetrics | None = None
    regret_at_1: float | None = None
    rank_correlation: float | None = None
    nmse: float | None = None

    def to_table(self) -> str:
        """Plain-text table: rank, name, estimate and interval, true value and SharpeRatio@k if known."""
        lines = [f"estimator: {self.estimator}    V(pi_b) = {self.behavior_value:.6g}"]
        header = "".join(f"{h:>12}" for h in ("estimate", "ci_low", "ci_high", "true"))
        lines.append(f"{'k':>3}  {'policy':<20}{header}{'Sharpe@k':>10}")
        for k, name in enumerate(self.order, start=1):
            est = self.estimates[name]
            true = "" if self.true_values is None else f"{self.true_values[name]:.6g}"
            sharpe = "" if self.top_k is None else f"{self.top_k.sharpe_ratio[k - 1]:.4g}"
            cells = "".join(f"{v:>12.6g}" for v in (est.value, est.ci_low, est.ci_high))
            lines.append(f"{k:>3}  {name:<20}{cells}{true:>12}{sharpe:>10}")
        if self.regret_at_1 is not None:
            lines.append(
                f"regret@1 = {self.regret_at_1:.6g}   rank correlation = {self.rank_correlation:.4g}   "
                f"nMSE = {self.nmse:.4g}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN stays NaN)."""
        return {
            "estimator": self.estimator,
            "order": self.order,
            "estimates": {k: vars(v) for k, v in self.estimates.items()},
            "behavior_value": self.behavior_value,
            "true_values": self.true_values,
            "top_k": None if self.top_k is None else self.top_k.to_dict(),
            "regret_at_1": self.regret_at_1,
            "rank_correlation": self.rank_correlation,
            "nmse": self.nmse,
        }


def _action_dist(name: str, candidate: Candidate, feedback: LoggedBanditFeedback) -> np.ndarray:
    dist = np.asarray(candidate(feedback) if callable(candidate) else candidate, dtype=np.float64)
    if dist.shape[:2] != (feedback.n_rounds, feedback.n_actions):
        raise ValueError(
            f"candidates[{name!r}]: action distribution of shape {dist.shape}, expected "
            f"({feedback.n_rounds}, {feedback.n_actions}[, len_list])"
        )
    return dist


def rank_policies(
    feedback: LoggedBanditFeedback,
    candidates: Mapping[str, Candidate],
    *,
    estimator: str = "snips",
    estimated_rewards: Callable[[LoggedBanditFeedback], np.ndarray] | np.ndarray | None = None,
    true_values: Mapping[str, float] | None = None,
    safety_threshold: float | None = None,
    **params: Any,
) -> PolicyRanking:
    """Estimate every candidate with ``estimator`` and rank them (best first).

    ``estimated_rewards`` is q̂ for model-based estimators (array or callable of the feedback).
    V(π_b) is the on-policy value of the logs, mean(reward). ``params`` go to :func:`estimate`.
    """
    if not candidates:
        raise ValueError("candidates: give at least one candidate policy")
    q_hat = estimated_rewards(feedback) if callable(estimated_rewards) else estimated_rewards
    dists = {name: _action_dist(name, cand, feedback) for name, cand in candidates.items()}
    estimates = {
        name: estimate(
            estimator,
            reward=feedback.reward,
            action=feedback.action,
            pscore=feedback.pscore,
            action_dist=dist,
            estimated_rewards=q_hat,
            position=feedback.position,
            **params,
        )
        for name, dist in dists.items()
    }
    names = list(estimates)
    est = np.array([estimates[n].value for n in names])
    order = [names[i] for i in estimated_order(est)]
    behavior_value = float(feedback.reward.mean())
    if true_values is None and feedback.expected_reward is not None:
        true_values = {n: policy_value(feedback.expected_reward, d) for n, d in dists.items()}
    if true_values is None:
        return PolicyRanking(estimator, order, estimates, behavior_value)
    missing = sorted(set(names) - set(true_values))
    if missing:
        raise ValueError(f"true_values: missing candidate(s) {missing}")
    tru = np.array([true_values[n] for n in names])
    return PolicyRanking(
        estimator,
        order,
        estimates,
        behavior_value,
        true_values={n: float(true_values[n]) for n in names},
        top_k=top_k_metrics(est, tru, behavior_value, safety_threshold=safety_threshold),
        regret_at_1=regret_at_k(est, tru, 1),
        rank_correlation=rank_correlation(est, tru),
        nmse=nmse(est, tru),
    )
