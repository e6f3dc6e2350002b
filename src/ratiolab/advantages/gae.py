"""Generalised advantage estimation at token level: GAE (Schulman et al., arXiv 1506.02438) and T-PPO's
extended GAE for truncated responses (EGAE, arXiv 2506.15050; docs/methods/rlhf.md §7).

Both declare the learner part ``value_head`` (:mod:`ratiolab.learner.value_head`): on the language-model
track the value head gives ``values`` and trains on the returns.
"""

from __future__ import annotations

import torch

from ratiolab.advantages.core import ADVANTAGES, require_shape


def _check(method: str, rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None,
           gamma: float, lam: float) -> None:
    require_shape(method, "values", values, rewards.shape)
    require_shape(method, "mask", mask, rewards.shape)
    if kl is not None:
        require_shape(method, "kl", kl, rewards.shape)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"{method}: gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")


def _recursion(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, bootstrap: torch.Tensor,
               gamma: float, lam: float) -> torch.Tensor:
    """``A_t = delta_t + gamma lam A_{t+1}`` backwards over valid positions; ``bootstrap`` ``[B]`` is the value
    after each row's last valid token."""
    m = mask.to(values.dtype)
    adv = torch.zeros_like(values)
    next_value = bootstrap.to(values.dtype)
    next_adv = torch.zeros_like(values[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a_t = delta + gamma * lam * next_adv
        valid = m[:, t]
        adv[:, t] = a_t * valid
        next_value = torch.where(valid > 0, values[:, t], next_value)
        next_adv = torch.where(valid > 0, a_t, next_adv)
    return adv


def _shaped(rewards: torch.Tensor, kl: torch.Tensor | None, beta: float) -> torch.Tensor:
    return rewards if kl is None else rewards - beta * kl


@ADVANTAGES.register("gae", arxiv="1506.02438", summary="GAE(gamma, lambda); value after the last valid token = 0",
                     inputs=("rewards", "values", "mask", "kl", "beta"), parts=("value_head",))
def gae(
    *,
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    beta: float = 0.0,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> torch.Tensor:
    """``delta_t = r_t + gamma V_{t+1} - V_t``; ``A_t = delta_t + gamma lam A_{t+1}`` (arXiv 1506.02438).

    ``[B, T]`` tensors. Positions with ``mask == 0`` are skipped (so tokens an environment
    inserted mid-sequence are stepped over) and the value after the last valid token is 0.
    ``kl`` (per-token k1 ``prox_logp - ref_logp``, the ``reward_token`` placement) shapes the rewards:
    ``r_t - beta kl_t``. Returns are ``A + values``. [verified: code] (MOSS-RLHF, verl).
    Example (docs/methods/baselines.md §4): gamma 1, lam 0.95, V = [0.5, 0.6, 0.7], reward 1 at the end
    -> A = [0.46575, 0.385, 0.3].
    """
    _check("gae", rewards, values, mask, kl, gamma, lam)
    values = values.detach()
    return _recursion(_shaped(rewards, kl, beta), values, mask, torch.zeros_like(values[:, 0]), gamma, lam)


@ADVANTAGES.register("egae", arxiv="2506.15050",
                     summary="T-PPO's extended GAE: a truncated response bootstraps V(s_l) := V(s_{l-1}), no outcome",
                     inputs=("rewards", "values", "mask", "finished", "kl", "beta"), parts=("value_head",))
def egae(
    *,
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    finished: torch.Tensor,
    kl: torch.Tensor | None = None,
    beta: float = 0.0,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> torch.Tensor:
    """Extended GAE for responses truncated before they finished (T-PPO, arXiv 2506.15050 [secondary source]).

    A finished row (``finished`` ``[B]`` bool: the response ended at EOS) takes ordinary GAE with terminal
    value 0. A row cut at length ``l`` has no outcome reward (its ``rewards`` are dropped; the ``kl``
    shaping stays) and the missing bootstrap is the last available value, ``V(s_l) := V(s_{l-1})``, so
    ``delta_{l-1} = r_{l-1} + (gamma - 1) V(s_{l-1})``. Defaults gamma 1 (adjacent recipes), lam 0.95
    [unverified]. The value head trains on finished rows only (the learner part reads ``finished``).
    Example (docs/methods/rlhf.md §7): V = [0.5, 0.6, 0.7], gamma 1, lam 0.95: cut -> [0.195, 0.1, 0];
    finished with reward 1 at the end -> [0.46575, 0.385, 0.3].
    """
    _check("egae", rewards, values, mask, kl, gamma, lam)
    require_shape("egae", "finished", finished, rewards.shape[:1])
    values = values.detach()
    done = finished.to(torch.bool)
    m = mask.to(values.dtype)
    idx = torch.arange(m.shape[1], device=m.device).expand_as(m)
    last = torch.where(m > 0, idx, torch.zeros_like(idx)).max(-1).values
    bootstrap = torch.where(done, torch.zeros_like(values[:, 0]), values.gather(1, last[:, None])[:, 0])
    outcome = rewards * done[:, None].to(rewards.dtype)
    return _recursion(_shaped(outcome, kl, beta), values, mask, bootstrap, gamma, lam)
