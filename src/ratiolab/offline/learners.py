"""The offline learners on continuous actions, registered by name in :data:`OFFLINE_ALGOS`.

Every learner sees normalised states and actions scaled to ``[-1, 1]``; :meth:`OfflineLearner.update`
takes one batch (``obs``, ``act``, ``rew``, ``next_obs``, ``term``: truncations bootstrap) and the update
index. TD3+BC and PRDC share the TD3 critic (twin Q, target-policy smoothing, delayed actor with a
target copy); IQL has twin Q with targets, a state value V and a Gaussian actor (tanh mean,
state-independent log-std clamped to ``[-5, 2]``), evaluated at its mean.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from ratiolab.gym.policies import mlp
from ratiolab.offline.constraint import DatasetConstraint
from ratiolab.offline.losses import awr_loss, expectile_loss, q_scaled_bc_loss, td_target, twin_critic_loss

Batch = dict[str, torch.Tensor]


@dataclass
class LearnerConfig:
    """Shared and per-algorithm settings (defaults: the papers' D4RL locomotion settings)."""

    hidden: list[int] = field(default_factory=lambda: [256, 256])
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    alpha: float = 2.5
    dc_beta: float = 2.0
    expectile: float = 0.7
    awr_beta: float = 3.0


class OfflineLearner:
    """Modules, optimisers and one gradient update. ``name`` is the ``--algo`` value."""

    name: ClassVar[str]

    def __init__(self, cfg: LearnerConfig, obs_dim: int, act_dim: int, data: Batch) -> None:
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action in ``[-1, 1]``."""
        raise NotImplementedError


OFFLINE_ALGOS: dict[str, type[OfflineLearner]] = {}
L = TypeVar("L", bound=type[OfflineLearner])


def register(cls: L) -> L:
    if cls.name in OFFLINE_ALGOS:
        raise ValueError(f"offline algorithm {cls.name!r} is already registered")
    OFFLINE_ALGOS[cls.name] = cls
    return cls


def _soft_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for p, pt in zip(net.parameters(), target.parameters(), strict=True):
            pt.mul_(1 - tau).add_(p, alpha=tau)


class _Twin(nn.Module):
    """Two Q-networks over ``cat(s, a)``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.q1, self.q2 = (mlp(obs_dim + act_dim, hidden, 1, "relu") for _ in range(2))

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sa = torch.cat([s, a], -1)
        return self.q1(sa)[:, 0], self.q2(sa)[:, 0]


class _TD3(OfflineLearner):
    """TD3 with a behaviour-regularised actor; subclasses give the actor's target action."""

    def __init__(self, cfg: LearnerConfig, obs_dim: int, act_dim: int, data: Batch) -> None:
        super().__init__(cfg, obs_dim, act_dim, data)
        self.actor = mlp(obs_dim, cfg.hidden, act_dim, "relu")
        self.critic = _Twin(obs_dim, act_dim, cfg.hidden)
        self.actor_t, self.critic_t = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_t,
                "critic_target": self.critic_t}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.actor(obs))

    def bc_target(self, s: torch.Tensor, a: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        c = self.cfg
        s, a, s2 = batch["obs"], batch["act"], batch["next_obs"]
        with torch.no_grad():
            noise = (torch.randn_like(a) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            a2 = (torch.tanh(self.actor_t(s2)) + noise).clamp(-1.0, 1.0)
            y = td_target(batch["rew"], batch["term"], torch.minimum(*self.critic_t(s2, a2)), c.gamma)
        q1, q2 = self.critic(s, a)
        loss, metrics = twin_critic_loss(q1, q2, y)
        self.critic_opt.zero_grad()
        loss.backward()
        self.critic_opt.step()
        if step % c.policy_freq == 0:
            pi = self.act(s)
            q = self.critic(s, pi)[0]
            a_loss, a_metrics = q_scaled_bc_loss(q, pi, self.bc_target(s, a, pi), c.alpha)
            self.actor_opt.zero_grad()
            a_loss.backward()
            self.actor_opt.step()
            _soft_update(self.actor, self.actor_t, c.tau)
            _soft_update(self.critic, self.critic_t, c.tau)
            metrics.update(a_metrics)
        return metrics


@register
class TD3BC(_TD3):
    """TD3+BC (arXiv 2106.06860): the actor is pulled toward the dataset action."""

    name = "td3bc"

    def bc_target(self, s: torch.Tensor, a: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
        return a


@register
class PRDC(_TD3):
    """PRDC (arXiv 2306.06569): the actor is pulled toward the nearest dataset action of ``(beta * s, pi(s))``."""

    name = "prdc"

    def __init__(self, cfg: LearnerConfig, obs_dim: int, act_dim: int, data: Batch) -> None:
        super().__init__(cfg, obs_dim, act_dim, data)
        self.constraint = DatasetConstraint(data["obs"].numpy(), data["act"].numpy(), cfg.dc_beta)

    def bc_target(self, s: torch.Tensor, a: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
        return self.constraint.nearest(s, pi)[0]


class _GaussianActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, "relu")
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(s))

    def log_prob(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std.clamp(-5.0, 2.0)
        z = (a - self(s)) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


@register
class IQL(OfflineLearner):
    """IQL (arXiv 2110.06169): expectile V, Q regressed to ``r + gamma V(s')``, advantage-weighted actor."""

    name = "iql"

    def __init__(self, cfg: LearnerConfig, obs_dim: int, act_dim: int, data: Batch) -> None:
        super().__init__(cfg, obs_dim, act_dim, data)
        self.critic = _Twin(obs_dim, act_dim, cfg.hidden)
        self.critic_t = copy.deepcopy(self.critic)
        self.value = mlp(obs_dim, cfg.hidden, 1, "relu")
        self.actor = _GaussianActor(obs_dim, act_dim, cfg.hidden)
        self.opts: dict[str, torch.optim.Optimizer] = {
            "critic": torch.optim.Adam(self.critic.parameters(), lr=cfg.lr),
            "value": torch.optim.Adam(self.value.parameters(), lr=cfg.lr),
            "actor": torch.optim.Adam(self.actor.parameters(), lr=cfg.lr),
        }

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_t, "value": self.value}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opts

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.actor(obs)
        return out

    def _step(self, name: str, loss: torch.Tensor) -> None:
        self.opts[name].zero_grad()
        loss.backward()
        self.opts[name].step()

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        c = self.cfg
        s, a = batch["obs"], batch["act"]
        with torch.no_grad():
            q_t = torch.minimum(*self.critic_t(s, a))
        v = self.value(s)[:, 0]
        v_loss, metrics = expectile_loss(q_t - v, c.expectile)
        self._step("value", v_loss)
        with torch.no_grad():
            y = td_target(batch["rew"], batch["term"], self.value(batch["next_obs"])[:, 0], c.gamma)
        q1, q2 = self.critic(s, a)
        q_loss, q_metrics = twin_critic_loss(q1, q2, y)
        self._step("critic", q_loss)
        a_loss, a_metrics = awr_loss(q_t - v.detach(), self.actor.log_prob(s, a), c.awr_beta)
        self._step("actor", a_loss)
        _soft_update(self.critic, self.critic_t, c.tau)
        return {**metrics, **q_metrics, **a_metrics}


def optimizer_state(learner: OfflineLearner) -> dict[str, Any]:
    return {k: o.state_dict() for k, o in learner.optimizers().items()}


def as_batch(arrays: dict[str, np.ndarray]) -> Batch:
    return {k: torch.from_numpy(np.array(v, np.float32)) for k, v in arrays.items()}
