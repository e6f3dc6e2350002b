"""A 2-D conditional toy for flow policies: the condition picks a target mode, the reward is closeness to it.

Modes sit on a circle of radius 2; ``reward = -||x_K - m_c||``. :func:`train` runs a GRPO-style loop on the
per-step Gaussian ratios with any registered objective (``ppo``, ``grpo_guard``, ...), one denoising step
per token; :func:`warm_start` fits the velocity net by conditional flow matching on noisy mode samples.
See docs/methods/flow.md §7.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ratiolab import advantages, objectives
from ratiolab.flow.matching import cfm_loss
from ratiolab.flow.sampler import FlowPolicy, step_inputs
from ratiolab.objectives.grpo_guard import GAUSSIAN_ONLY


def modes(n: int = 4, radius: float = 2.0) -> torch.Tensor:
    """``n`` mode centres ``[n, 2]`` evenly on a circle."""
    a = torch.arange(n) * (2 * math.pi / n)
    return radius * torch.stack([a.cos(), a.sin()], 1)


def reward(x: torch.Tensor, cond: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``-||x - centres[cond]||`` ``[B]``."""
    return -(x - centres[cond]).norm(dim=-1)


@torch.no_grad()
def evaluate(policy: FlowPolicy, centres: torch.Tensor, *, per_mode: int = 64, seed: int = 5) -> float:
    """Mean reward of ``per_mode`` samples for every mode, with a fixed noise seed."""
    cond = torch.arange(len(centres)).repeat(per_mode)
    traj = policy.sample(cond, generator=torch.Generator().manual_seed(seed))
    return reward(traj.sample, cond, centres).mean().item()


def warm_start(policy: FlowPolicy, centres: torch.Tensor, *, iters: int = 100, batch: int = 128,
               spread: float = 0.5, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Conditional flow matching on data ``m_c + spread * N(0, I)``; returns the loss per iteration."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    out = []
    for _ in range(iters):
        cond = torch.randint(len(centres), (batch,), generator=g)
        x1 = centres[cond] + spread * torch.randn(batch, 2, generator=g)
        loss = cfm_loss(policy.velocity, torch.randn(batch, 2, generator=g), x1, torch.rand(batch, generator=g), cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


def train(policy: FlowPolicy, centres: torch.Tensor, objective: str, *, iters: int = 30, prompts: int = 8,
          group: int = 8, epochs: int = 2, lr: float = 3e-3, seed: int = 0, delta_schedule: str | None = None,
          **params: Any) -> list[float]:
    """GRPO loop: ``prompts`` conditions x ``group`` samples, group-normalised rewards as advantages, ``epochs``
    updates per batch on the ``[B, K]`` step ratios; returns the mean reward of each batch. A Gaussian-only
    objective gets the step means and std, and with ``delta_schedule`` the per-step weights
    :meth:`FlowPolicy.step_weights` as ``delta``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    history = []
    for _ in range(iters):
        ids = torch.randint(len(centres), (prompts,), generator=g)
        traj = policy.sample(ids.repeat_interleave(group), generator=g)
        r = reward(traj.sample, traj.cond, centres)
        history.append(r.mean().item())
        adv = advantages.compute("grpo", rewards=r, group_ids=torch.arange(prompts).repeat_interleave(group))
        for _ in range(epochs):
            logp, means = policy.log_prob(traj)
            extra: dict[str, Any] = ({"mean": means, "mean_old": traj.means, "step_std": traj.step_std.expand_as(logp)}
                     if objective in GAUSSIAN_ONLY else {})
            if delta_schedule is not None:
                extra["delta"] = policy.step_weights(delta_schedule).expand_as(logp)
            out = objectives.compute(objective, step_inputs(traj, logp, adv), **extra, **params)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    return history
