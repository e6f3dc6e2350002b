"""Token-level return estimators with KL shaping: REINFORCE++ (+ baseline) and ReMax."""

from __future__ import annotations

import torch

from ratiolab.advantages.core import ADVANTAGES, require_shape
from ratiolab.advantages.group import group_stats
from ratiolab.masked import last_valid, masked_whiten


def _check(method: str, scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None) -> None:
    if mask.dim() != 2:
        raise ValueError(f"{method}: mask must be [B, T], got shape {tuple(mask.shape)}")
    require_shape(method, "scores", scores, mask.shape[:1])
    if kl is not None:
        require_shape(method, "kl", kl, mask.shape)


def _discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = sum_{s >= t} gamma^{s-t} r_s`` over valid tokens."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] * mask[:, t] + gamma * running
        out[:, t] = running * mask[:, t]
    return out


@ADVANTAGES.register(
    "reinforce_pp", arxiv="2501.03262", summary="batch-whitened returns of -beta*k1 + outcome score",
    inputs=("scores", "mask", "kl", "beta")
)
def reinforce_pp(
    *,
    scores: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    beta: float = 0.01,
    gamma: float = 1.0,
    ddof: int = 0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """REINFORCE++ (arXiv 2501.03262; [verified: code] verl; beta [unverified]).

    Token rewards ``r_t = -beta k1_t`` plus the outcome ``scores`` at the last valid token;
    ``G_t = sum_{s>=t} gamma^{s-t} r_s``; advantage ``masked_whiten(G)`` over all valid tokens of
    the batch. ``kl`` is the per-token k1 ``prox_logp - ref_logp`` (``None``: no shaping).
    """
    _check("reinforce_pp", scores, mask, kl)
    m = mask.to(scores.dtype)
    rewards = last_valid(m) * scores[:, None]
    if kl is not None:
        rewards = rewards - beta * kl.detach()
    return masked_whiten(_discounted_returns(rewards, m, gamma), m, ddof=ddof, eps=eps)


@ADVANTAGES.register(
    "reinforce_pp_baseline",
    arxiv="2501.03262",
    summary="REINFORCE++ with the group-mean score subtracted before batch whitening",
    inputs=("scores", "group_ids", "mask", "kl", "beta")
)
def reinforce_pp_baseline(
    *,
    scores: torch.Tensor,
    group_ids: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    beta: float = 0.01,
    gamma: float = 1.0,
    ddof: int = 0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """REINFORCE++-baseline: ``scores - mean_g(scores)``, then the REINFORCE++ returns and whitening."""
    mean, _, _ = group_stats(scores, group_ids)
    return reinforce_pp(scores=scores - mean, mask=mask, kl=kl, beta=beta, gamma=gamma, ddof=ddof, eps=eps)


@ADVANTAGES.register("remax", arxiv="2310.10505", summary="greedy-rollout baseline: gamma^(T-t+1) (R - R_greedy)",
                     inputs=("rewards", "greedy_rewards", "mask", "kl", "beta"))
def remax(
    *,
    rewards: torch.Tensor,
    greedy_rewards: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    beta: float = 0.1,
    gamma: float = 0.95,
    reward_clip: float = 5.0,
) -> torch.Tensor:
    """ReMax (arXiv 2310.10505; [verified: code] liziniu/ReMax ``compute_returns``).

    ``D = clip(R - R_greedy, -reward_clip, reward_clip)``;
    ``G_t = -beta kl_t + gamma^(T - t + 1) D`` for 1-based t up to the last valid T, where
    ``kl_t = prox_logp_t - ref_logp_t`` at t only (the official code's per-token form). Pair it
    with the ``pg`` objective and token-mean aggregation.

    This differs from verl's ``compute_remax_outcome_advantage`` on purpose: verl's advantage is the
    undiscounted return ``sum_{s >= t} r_s - R_greedy`` of token rewards that already hold
    ``-beta kl_s`` on every token (``use_kl_in_reward``), so its KL term at t sums the KL of all later
    tokens, with no ``gamma`` and no reward clip; here the KL enters at t only, as in the ReMax code.
    """
    _check("remax", rewards, mask, kl)
    require_shape("remax", "greedy_rewards", greedy_rewards, rewards.shape)
    if reward_clip <= 0:
        raise ValueError(f"remax: reward_clip must be > 0, got {reward_clip}")
    m = mask.to(rewards.dtype)
    d = (rewards - greedy_rewards).clamp(-reward_clip, reward_clip)
    steps_to_end = torch.flip(torch.cumsum(torch.flip(m, [1]), 1), [1])  # T - t + 1 on valid tokens
    out = gamma**steps_to_end * d[:, None]
    if kl is not None:
        out = out - beta * kl.detach()
    return out * m
