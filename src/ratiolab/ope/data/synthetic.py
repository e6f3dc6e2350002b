"""Synthetic logged bandit feedback with known ground truth (in the style of OBP's SyntheticBanditDataset).

x ~ N(0, I_d); q(x, a) = sigmoid(x·θ_a + b_a) with θ, b ~ N(0, 1); π_b = softmax(β·q(x, ·));
a ~ π_b; r ~ Bernoulli(q(x, a)) ("binary") or q(x, a) + N(0, σ²) ("continuous").
The true value of a policy π on the logged contexts is mean_i Σ_a π(a|x_i)·q(x_i, a).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ratiolab.ope.data.schema import LoggedBanditFeedback
from ratiolab.ope.validation import FloatArray, as_float, check_distribution


@dataclass(frozen=True)
class SyntheticBanditConfig:
    """Generator settings.

    n_rounds: logged rounds (default 10_000). n_actions: K (default 5). dim_context: d (default 5).
    beta: inverse temperature of the behaviour softmax over q (default 1.0; 0 = uniform logging,
    negative = a behaviour policy that prefers bad actions). reward_type: "binary" (default) or
    "continuous". reward_noise: σ of continuous rewards (default 0.1). seed: RNG seed (default 0).
    """

    n_rounds: int = 10_000
    n_actions: int = 5
    dim_context: int = 5
    beta: float = 1.0
    reward_type: Literal["binary", "continuous"] = "binary"
    reward_noise: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_rounds", "n_actions", "dim_context"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.reward_type not in ("binary", "continuous"):
            raise ValueError(f"reward_type: must be 'binary' or 'continuous', got {self.reward_type!r}")


def softmax_policy(scores: Any, beta: float = 1.0) -> FloatArray:
    """softmax(β·scores) along the last axis (a policy's action distribution)."""
    z = beta * as_float("scores", scores, (1, 2, 3))
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def make_synthetic_feedback(cfg: SyntheticBanditConfig | None = None) -> LoggedBanditFeedback:
    """Sample logged feedback; ``expected_reward`` and ``pi_b`` carry the ground truth."""
    cfg = cfg or SyntheticBanditConfig()
    rng = np.random.default_rng(cfg.seed)
    x = rng.standard_normal((cfg.n_rounds, cfg.dim_context))
    theta = rng.standard_normal((cfg.dim_context, cfg.n_actions))
    bias = rng.standard_normal(cfg.n_actions)
    q = 1.0 / (1.0 + np.exp(-(x @ theta + bias)))
    pi_b = softmax_policy(q, cfg.beta)
    u = rng.random((cfg.n_rounds, 1))
    action = np.minimum((pi_b.cumsum(axis=1) < u).sum(axis=1), cfg.n_actions - 1)
    rows = np.arange(cfg.n_rounds)
    q_a = q[rows, action]
    if cfg.reward_type == "binary":
        reward = (rng.random(cfg.n_rounds) < q_a).astype(np.float64)
    else:
        reward = q_a + cfg.reward_noise * rng.standard_normal(cfg.n_rounds)
    return LoggedBanditFeedback(
        action=action,
        reward=reward,
        pscore=pi_b[rows, action],
        n_actions=cfg.n_actions,
        context=x,
        pi_b=pi_b,
        expected_reward=q,
    )


def policy_value(expected_reward: Any, action_dist: Any) -> float:
    """Ground truth mean_i Σ_a π(a|x_i)·q(x_i, a) for ``action_dist`` (n, K)."""
    q = as_float("expected_reward", expected_reward, 2)
    dist = as_float("action_dist", action_dist, 2)
    if dist.shape != q.shape:
        raise ValueError(f"action_dist: shape {dist.shape} must equal expected_reward's {q.shape}")
    check_distribution("action_dist", dist, axis=1)
    return float(np.einsum("ik,ik->i", dist, q).mean())
