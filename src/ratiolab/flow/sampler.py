"""A conditional stochastic K-step sampler policy whose denoising steps are Gaussian "tokens".

The velocity net ``v_theta(x, t, c)`` (an MLP over the state, the time and a one-hot condition) drives an
Euler-Maruyama chain from ``x_0 ~ N(0, I)`` at ``t = 0`` to the sample ``x_K`` at ``t = 1``:

    mu_k = x_k + v_theta(x_k, t_k, c) dt,   x_{k+1} = mu_k + s_k eps,   s_k = sigma sqrt(dt),   t_k = k dt

[inferred] toy chain: the noise is added without a score correction, so the chain's marginals are not the
flow's; it is a stochastic policy with exact per-step Gaussian likelihoods, which is all the ratio-based
objectives need. See docs/methods/flow.md §1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ratiolab.flow.gaussian import gaussian_step_logp
from ratiolab.objectives.grpo_guard import step_weight
from ratiolab.types import PolicyLossInputs


@dataclass(frozen=True)
class Trajectory:
    """A sampled batch: states ``xs`` ``[B, K+1, D]``, step means ``means`` ``[B, K, D]`` and per-step
    ``logp`` ``[B, K]`` under the sampling policy, conditions ``cond`` ``[B]``, step stds ``step_std``
    ``[K]`` and times ``t`` ``[K]``."""

    xs: torch.Tensor
    means: torch.Tensor
    logp: torch.Tensor
    cond: torch.Tensor
    step_std: torch.Tensor
    t: torch.Tensor

    @property
    def sample(self) -> torch.Tensor:
        """The final sample ``x_K`` ``[B, D]``."""
        return self.xs[:, -1]


class VelocityNet(nn.Module):
    """``v_theta(x, t, c)``: an MLP over ``[x, t, one_hot(c)]``."""

    def __init__(self, dim: int, num_cond: int, hidden: int = 64) -> None:
        super().__init__()
        self.num_cond = num_cond
        self.net = nn.Sequential(
            nn.Linear(dim + 1 + num_cond, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., D]``, ``t`` ``[...]``, ``cond`` ``[...]`` integer -> velocity ``[..., D]``."""
        onehot = nn.functional.one_hot(cond, self.num_cond).to(x.dtype)
        return self.net(torch.cat([x, t.unsqueeze(-1).to(x.dtype), onehot], -1))


class FlowPolicy(nn.Module):
    """The K-step sampler over :class:`VelocityNet`; ``sigma`` scales the step noise ``s_k = sigma sqrt(dt)``."""

    def __init__(self, dim: int, num_cond: int, *, steps: int = 5, sigma: float = 0.5, hidden: int = 64) -> None:
        super().__init__()
        if steps < 1 or sigma <= 0:
            raise ValueError(f"FlowPolicy: need steps >= 1 and sigma > 0, got steps={steps}, sigma={sigma}")
        self.velocity = VelocityNet(dim, num_cond, hidden)
        self.dim, self.steps, self.sigma = dim, steps, sigma

    @property
    def dt(self) -> float:
        return 1.0 / self.steps

    def times(self) -> torch.Tensor:
        """``t_k = k dt`` for ``k = 0 .. K-1``."""
        return torch.arange(self.steps, dtype=torch.float32) * self.dt

    def step_weights(self, schedule: str, eta: float = 0.7) -> torch.Tensor:
        """GRPO-Guard's per-step weights delta_k (Eq. 12) ``[K]``, at the noise level ``1 - t_k`` of each step
        (the paper's time runs from noise at 1 to data at 0; this chain's from noise at 0)."""
        return torch.tensor([step_weight(schedule, 1.0 - float(t), self.dt, eta) for t in self.times()])

    def step_means(self, xs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``mu_k = x_k + v_theta(x_k, t_k, c) dt`` for the stored states ``xs[:, :K]`` -> ``[B, K, D]``."""
        x = xs[:, :-1]
        b, k = x.shape[:2]
        t = self.times().to(x.device).expand(b, k)
        return x + self.velocity(x, t, cond.unsqueeze(1).expand(b, k)) * self.dt

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> Trajectory:
        """Run the chain for conditions ``cond`` ``[B]``; nothing keeps gradients."""
        b = cond.shape[0]
        s = self.sigma * self.dt**0.5
        x = torch.randn(b, self.dim, generator=generator)
        xs, means = [x], []
        for k in range(self.steps):
            t = torch.full((b,), k * self.dt)
            mu = x + self.velocity(x, t, cond) * self.dt
            x = mu + s * torch.randn(b, self.dim, generator=generator)
            xs.append(x)
            means.append(mu)
        xs_t, means_t = torch.stack(xs, 1), torch.stack(means, 1)
        return Trajectory(xs_t, means_t, gaussian_step_logp(xs_t[:, 1:], means_t, s), cond,
                          torch.full((self.steps,), s), self.times())

    def log_prob(self, traj: Trajectory) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step ``logp`` ``[B, K]`` of ``traj``'s transitions under the current policy (with gradient), and the
        means ``[B, K, D]``."""
        means = self.step_means(traj.xs, traj.cond)
        return gaussian_step_logp(traj.xs[:, 1:], means, traj.step_std), means


def step_inputs(traj: Trajectory, logp: torch.Tensor, adv: torch.Tensor) -> PolicyLossInputs:
    """``PolicyLossInputs`` with one token per denoising step: ``prox_logp`` = the sampling policy's step
    log-probs, the sequence advantage ``adv`` ``[B]`` broadcast over the K steps, every step trained."""
    if adv.shape != traj.logp.shape[:1]:
        raise ValueError(f"step_inputs: adv must be [B] = {tuple(traj.logp.shape[:1])}, got {tuple(adv.shape)}")
    return PolicyLossInputs(logp=logp, prox_logp=traj.logp, adv=adv.unsqueeze(1).expand_as(logp),
                            mask=torch.ones_like(traj.logp))
