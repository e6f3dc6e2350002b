"""Off-policy MDPO: SAC-style twin critics with a mirror-descent actor (arXiv 2005.09814, ``mdpo_off``).

Per environment step after ``learning_starts`` (arXiv 2005.09814, [verified: code]):

    V_targ(s') = min(Q1', Q2')(s', a') - lambda log pi_theta(a'|s'),   a' ~ pi_theta(.|s')
    Q loss     = MSE(Q1(s, a), r + gamma (1 - term) V_targ(s')) + MSE(Q2(s, a), same)
    actor loss = mdpo(variant="off"): c (log pi_theta(a|s) - log pi_old(a|s)) + lambda log pi_old(a|s)
                 - Q1(s, a) + 1e-3 (mean^2 + log_std^2),   a ~ pi_theta (reparameterised, tanh-squashed)

with Polyak-averaged target critics (tau) and ``pi_old`` a frozen copy of the actor refreshed every
``old_policy_every`` environment steps. The replay buffer holds ``min(buffer_size, total_steps)``
transitions; truncated episodes store their final observation as the successor.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ratiolab import objectives
from ratiolab.gym.algorithm import Algorithm, register
from ratiolab.gym.policies import mlp
from ratiolab.types import PolicyLossInputs

if TYPE_CHECKING:
    from ratiolab.gym.config import GymTrainConfig
    from ratiolab.gym.rollout import VecRunner

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class SquashedGaussian(nn.Module):
    """``a = tanh(u)``, ``u ~ N(mu(s), sigma(s))``; log-prob with the tanh change of variables."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim, "relu")

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @staticmethod
    def log_prob(mean: torch.Tensor, log_std: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)`` of squashed actions ``a`` in (-1, 1) (gradient flows through ``a``)."""
        a = a.clamp(-1 + 1e-6, 1 - 1e-6)
        u = torch.atanh(a)
        z = (u - mean) * torch.exp(-log_std)
        logp_u = (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return logp_u - torch.log1p(-a.square() + 1e-6).sum(-1)

    def rsample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised action, its log-prob, and the Gaussian's mean and log-std."""
        mean, log_std = self(obs)
        a = torch.tanh(mean + log_std.exp() * torch.randn_like(mean))
        return a, self.log_prob(mean, log_std, a), mean, log_std


@register
class MDPOOff(Algorithm):
    """State and per-iteration logic of off-policy MDPO (``steps_per_iteration`` env steps per call)."""

    name = "mdpo_off"
    objective = "mdpo"
    action_spaces = (spaces.Box,)

    @classmethod
    def update_steps(cls, cfg: GymTrainConfig) -> int:
        n = cfg.mdpo_off.num_envs
        return max(cfg.mdpo_off.steps_per_iteration // n, 1) * n

    @classmethod
    def env_count(cls, cfg: GymTrainConfig) -> int:
        return cfg.mdpo_off.num_envs

    @classmethod
    def discount(cls, cfg: GymTrainConfig) -> float:
        return cfg.mdpo_off.gamma

    def __init__(self, cfg: GymTrainConfig, runner: VecRunner) -> None:
        super().__init__(cfg, runner)
        self.m = cfg.mdpo_off
        obs_space, act_space = runner.envs.single_observation_space, runner.envs.single_action_space
        assert isinstance(obs_space, spaces.Box) and isinstance(act_space, spaces.Box)
        obs_dim, self.act_dim = int(obs_space.shape[0]), int(act_space.shape[0])
        self.scale = torch.as_tensor((act_space.high - act_space.low) / 2, dtype=torch.float32)
        self.centre = torch.as_tensor((act_space.high + act_space.low) / 2, dtype=torch.float32)
        m = self.m
        self.actor = SquashedGaussian(obs_dim, self.act_dim, m.hidden)
        self.old_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.q1, self.q2 = (mlp(obs_dim + self.act_dim, m.hidden, 1, "relu") for _ in range(2))
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=m.learning_rate)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=m.learning_rate)
        cap = min(m.buffer_size, cfg.total_steps)
        self.buf = {
            "obs": torch.zeros(cap, obs_dim),
            "next_obs": torch.zeros(cap, obs_dim),
            "act": torch.zeros(cap, self.act_dim),
            "rew": torch.zeros(cap),
            "term": torch.zeros(cap),
        }
        self.cap, self.pos, self.size, self.env_steps = cap, 0, 0, 0

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "old_actor": self.old_actor,
            "q1": self.q1,
            "q2": self.q2,
            "q1_target": self.q1_t,
            "q2_target": self.q2_t,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "update_idx": self.update_idx,
            "env_steps": self.env_steps,
            "pos": self.pos,
            "size": self.size,
            "actor_opt": self.actor_opt.state_dict(),
            "q_opt": self.q_opt.state_dict(),
            "buffer": {k: v[: self.size].clone() for k, v in self.buf.items()},
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.update_idx, self.env_steps = int(s["update_idx"]), int(s["env_steps"])
        self.pos, self.size = int(s["pos"]), int(s["size"])
        self.actor_opt.load_state_dict(s["actor_opt"])
        self.q_opt.load_state_dict(s["q_opt"])
        for k, v in s["buffer"].items():
            self.buf[k][: self.size] = v

    def _env_action(self, a: torch.Tensor) -> np.ndarray:
        out: np.ndarray = (a * self.scale + self.centre).numpy()
        return out

    def act(self, obs: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            mean, _ = self.actor(obs)
        return self._env_action(torch.tanh(mean))

    def iterate(self) -> dict[str, float]:
        m, runner = self.m, self.runner
        n = runner.envs.num_envs
        rows: list[dict[str, torch.Tensor]] = []
        for _ in range(self.steps_per_update // n):
            obs = torch.from_numpy(runner.obs)
            with torch.no_grad():
                if self.env_steps < m.learning_starts:
                    a = torch.rand(n, self.act_dim) * 2 - 1
                else:
                    a = self.actor.rsample(obs)[0]
            step = runner.step(self._env_action(a))
            succ = np.where(step.truncated[:, None], step.final_obs, step.obs)
            idx = (torch.arange(n) + self.pos) % self.cap
            self.buf["obs"][idx], self.buf["act"][idx] = obs, a
            self.buf["next_obs"][idx] = torch.from_numpy(succ)
            self.buf["rew"][idx] = torch.from_numpy(step.reward)
            self.buf["term"][idx] = torch.from_numpy(step.terminated).float()
            self.pos, self.size = (self.pos + n) % self.cap, min(self.size + n, self.cap)
            self.env_steps += n
            if self.env_steps % m.old_policy_every < n:
                self.old_actor.load_state_dict(self.actor.state_dict())
            if self.env_steps >= m.learning_starts and self.size >= m.batch_size:
                rows.append(self._gradient_step())
        self.update_idx += 1
        metrics = objectives.reduce_metrics(rows)  # one host transfer per iteration
        metrics.update(runner.pop_episodes())
        return metrics

    def _gradient_step(self) -> dict[str, torch.Tensor]:
        m = self.m
        idx = torch.randint(0, self.size, (m.batch_size,))
        s, a, r = self.buf["obs"][idx], self.buf["act"][idx], self.buf["rew"][idx]
        s2, term = self.buf["next_obs"][idx], self.buf["term"][idx]
        with torch.no_grad():
            a2, logp2, _, _ = self.actor.rsample(s2)
            sa2 = torch.cat([s2, a2], -1)
            v_targ = torch.minimum(self.q1_t(sa2), self.q2_t(sa2))[:, 0] - m.entropy_temp * logp2
            y = r + m.gamma * (1.0 - term) * v_targ
        sa = torch.cat([s, a], -1)
        q_loss = (self.q1(sa)[:, 0] - y).square().mean() + (self.q2(sa)[:, 0] - y).square().mean()
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()

        a_new, logp, mean, log_std = self.actor.rsample(s)
        old_mean, old_log_std = self.old_actor(s)
        old_logp = SquashedGaussian.log_prob(old_mean, old_log_std, a_new)
        q_new = self.q1(torch.cat([s, a_new], -1))
        ones = torch.ones(m.batch_size, 1)
        inputs = PolicyLossInputs(
            logp=logp[:, None], prox_logp=old_logp.detach()[:, None], adv=torch.zeros_like(ones), mask=ones
        )
        assert self.objective is not None
        out = objectives.compute(
            self.objective,
            inputs,
            variant="off",
            q=q_new,
            old_logp=old_logp[:, None],
            entropy_temp=m.entropy_temp,
            t_k=1.0 / m.kl_const,
        )
        loss = out.loss + 1e-3 * (mean.square().mean() + log_std.square().mean())
        self.actor_opt.zero_grad()
        loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for net, targ in ((self.q1, self.q1_t), (self.q2, self.q2_t)):
                for p, pt in zip(net.parameters(), targ.parameters(), strict=True):
                    pt.mul_(1 - m.tau).add_(p, alpha=m.tau)
        return {
            "loss/q": q_loss.detach(),
            "loss/policy": out.loss.detach(),
            "approx_kl": out.metrics["approx_kl"],
            "q_mean": out.metrics["mdpo/q_mean"],
        }
