"""Validated inputs of the contextual-bandit estimators (OBP argument names, arXiv 2008.07146).

``action_dist`` is the evaluation policy π_e with shape ``(n_rounds, n_actions)`` or the
position-aware ``(n_rounds, n_actions, len_list)``; it is read at ``[i, :, position_i]``.
``estimated_rewards`` (q̂) has the same shape. A 2-D ``action_dist`` applies at every position.
``pscore`` is π_b(a_i|x_i) (at that position).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ratiolab.ope.validation import (
    FloatArray,
    IntArray,
    as_float,
    as_index,
    as_probability,
    check_distribution,
    check_rows,
)


@dataclass(frozen=True)
class BanditInputs:
    """Per-round quantities every bandit estimator needs, read at the logged position.

    ``w`` is the importance weight π_e(a_i|x_i)/π_b(a_i|x_i); ``pi_e`` (n, K) and ``q_hat`` (n, K)
    are π_e(·|x_i) and q̂(x_i, ·); ``q_hat_factual`` is q̂(x_i, a_i).
    """

    reward: FloatArray
    action: IntArray
    pscore: FloatArray
    pi_e: FloatArray
    q_hat: FloatArray | None

    @property
    def n_rounds(self) -> int:
        return int(self.reward.shape[0])

    @property
    def w(self) -> FloatArray:
        return self.pi_e[np.arange(self.n_rounds), self.action] / self.pscore

    def require_q_hat(self) -> FloatArray:
        if self.q_hat is None:
            raise ValueError(
                "estimated_rewards: this estimator needs a reward model q̂(x, a); "
                "pass estimated_rewards with the shape of action_dist"
            )
        return self.q_hat

    @property
    def dm_rounds(self) -> FloatArray:
        """DM per-round value Σ_a π_e(a|x_i)·q̂(x_i, a)."""
        return np.einsum("ik,ik->i", self.pi_e, self.require_q_hat())

    @property
    def q_hat_factual(self) -> FloatArray:
        return self.require_q_hat()[np.arange(self.n_rounds), self.action]

    @classmethod
    def from_arrays(
        cls,
        *,
        reward: Any,
        action: Any,
        pscore: Any,
        action_dist: Any,
        estimated_rewards: Any = None,
        position: Any = None,
    ) -> BanditInputs:
        """Validate OBP-style arrays and slice them at the logged positions."""
        r = as_float("reward", reward, 1)
        n = r.shape[0]
        if n == 0:
            raise ValueError("reward: no logged rounds; pass at least one round")
        dist = as_probability("action_dist", action_dist, (2, 3), positive=False)
        check_rows("action_dist", dist, n)
        check_distribution("action_dist", dist, axis=1)
        a = as_index("action", action, 1, upper=dist.shape[1])
        check_rows("action", a, n)
        p = as_probability("pscore", pscore, 1, positive=True)
        check_rows("pscore", p, n)
        pos = _position(position, dist, n)
        rows = np.arange(n)
        pi_e = dist if dist.ndim == 2 else dist[rows, :, pos]
        q_hat = None
        if estimated_rewards is not None:
            q = as_float("estimated_rewards", estimated_rewards, (2, 3))
            if q.shape != dist.shape:
                raise ValueError(
                    f"estimated_rewards: shape {q.shape} must equal action_dist's shape {dist.shape}"
                )
            q_hat = q if q.ndim == 2 else q[rows, :, pos]
        return cls(reward=r, action=a, pscore=p, pi_e=pi_e, q_hat=q_hat)


def _position(position: Any, dist: FloatArray, n: int) -> IntArray:
    if position is None:
        if dist.ndim == 3 and dist.shape[2] > 1:
            raise ValueError(
                f"position: action_dist has {dist.shape[2]} positions (len_list); pass the logged position"
            )
        return np.zeros(n, dtype=np.int64)
    # a 2-D action_dist is the same policy at every position, so any position is valid
    pos = as_index("position", position, 1, upper=dist.shape[2] if dist.ndim == 3 else None)
    check_rows("position", pos, n)
    return pos
