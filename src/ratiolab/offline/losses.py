"""Pure losses of the offline learners (offline.md §1, §14, §15), each ``(loss, metrics)`` over ``[B]`` tensors.

- TD3 critic (arXiv 1802.09477): ``y = r + gamma * (1 - terminal) * min(Q1', Q2')(s', a')`` and
  ``L = MSE(Q1, y) + MSE(Q2, y)``.
- TD3+BC actor (arXiv 2106.06860): ``-lambda * mean Q(s, pi(s)) + mean (pi(s) - a)^2`` with
  ``lambda = alpha / mean|Q(s, pi(s))|`` (detached), alpha 2.5.
- PRDC actor (arXiv 2306.06569): the same form with the dataset action ``a`` replaced by the action of the
  nearest dataset neighbour of ``(beta * s, pi(s))`` (:mod:`ratiolab.offline.constraint`).
- IQL (arXiv 2110.06169): value ``L_V = mean |tau - 1(u < 0)| u^2`` with ``u = min(Q1', Q2')(s, a) - V(s)``
  (expectile tau 0.7); critic ``MSE(Q_i(s, a), r + gamma * (1 - terminal) * V(s'))``; actor (advantage-weighted
  regression) ``-mean min(exp(beta * (Q - V)), 100) * log pi(a|s)``, beta 3.
"""

from __future__ import annotations

import torch

Metrics = dict[str, torch.Tensor]
#: Upper bound of IQL's advantage weights (the reference implementations clip ``exp(beta * A)`` at 100).
AWR_MAX_WEIGHT = 100.0


def td_target(
    reward: torch.Tensor, terminal: torch.Tensor, next_value: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``r + gamma * (1 - terminal) * next_value`` (no gradient: a regression target)."""
    return (reward + gamma * (1.0 - terminal.float()) * next_value).detach()


def twin_critic_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """``MSE(Q1, y) + MSE(Q2, y)``."""
    loss = (q1 - target).square().mean() + (q2 - target).square().mean()
    return loss, {"loss/critic": loss.detach(), "q_mean": q1.detach().mean(), "target_mean": target.mean()}


def q_scaled_bc_loss(
    q: torch.Tensor, pi_action: torch.Tensor, target_action: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, Metrics]:
    """``-alpha / mean|Q| * mean Q + mean (pi - target)^2``: TD3+BC (target = dataset action), PRDC (target =
    nearest-neighbour action). ``mean|Q|`` carries no gradient; the target action is detached."""
    lam = alpha / q.abs().mean().detach().clamp_min(1e-8)
    bc = (pi_action - target_action.detach()).square().mean()
    loss = -lam * q.mean() + bc
    return loss, {"loss/actor": loss.detach(), "bc_mse": bc.detach(), "lambda": lam}


def expectile_loss(diff: torch.Tensor, tau: float) -> tuple[torch.Tensor, Metrics]:
    """``mean |tau - 1(diff < 0)| * diff^2`` (IQL's value loss with ``diff = Q - V``)."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    loss = (weight * diff.square()).mean()
    return loss, {"loss/value": loss.detach()}


def awr_loss(advantage: torch.Tensor, logp: torch.Tensor, beta: float) -> tuple[torch.Tensor, Metrics]:
    """``-mean min(exp(beta * A), 100) * log pi(a|s)``; the weights carry no gradient."""
    weight = torch.exp(beta * advantage.detach()).clamp(max=AWR_MAX_WEIGHT)
    loss = -(weight * logp).mean()
    clipped = (weight >= AWR_MAX_WEIGHT).float().mean()
    return loss, {"loss/actor": loss.detach(), "awr_weight_mean": weight.mean(), "awr_clip_frac": clipped}
