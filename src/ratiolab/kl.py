"""KL estimators between the current policy and a reference (baselines.md §2, [verified: code]).

With ``lr = logp - ref_logp`` and samples drawn from pi_theta:

- ``k1 = lr``                       (unbiased, can be negative)
- ``k2 = lr**2 / 2``                (>= 0)
- ``k3 = exp(-lr) - 1 + lr``        (>= 0, unbiased; Schulman's estimator)

Placements (``reward_token``, ``reward_seq``, ``loss``) are applied by the learner; in the
loss, ``ratiolab.objectives.compute(..., kl_coef=beta, kl_kind="k3")`` adds ``beta * k`` per
token with gradient through ``logp``.
"""

from __future__ import annotations

import torch

#: ``-lr`` is clamped to this bound inside ``exp`` so that k3 stays finite for any gap.
K3_LOG_BOUND = 20.0
KINDS = ("k1", "k2", "k3")


def estimate(kind: str, logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate of ``kind`` in ``k1 | k2 | k3`` (same shape as ``logp``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown KL estimator {kind!r}; valid kinds: {', '.join(KINDS)}")
    if logp.shape != ref_logp.shape:
        raise ValueError(f"ref_logp shape {tuple(ref_logp.shape)} does not match logp {tuple(logp.shape)}")
    lr = logp - ref_logp
    if kind == "k1":
        return lr
    if kind == "k2":
        return 0.5 * lr.square()
    return torch.exp((-lr).clamp(-K3_LOG_BOUND, K3_LOG_BOUND)) - 1.0 + lr
