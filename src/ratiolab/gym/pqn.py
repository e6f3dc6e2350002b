"""PQN: parallelised Q-learning with a LayerNorm Q-network and Q(lambda) targets (arXiv 2407.04811).

No replay buffer and no target network (arXiv 2407.04811, [verified: code] purejaxql / CleanRL
``pqn.py``): collect ``num_steps x num_envs`` epsilon-greedy transitions with the current
network, compute Q(lambda) targets backwards (``q_lambda``), then ``update_epochs`` passes of
minibatch RAdam on ``0.5 mean (Q(s, a) - G)^2`` with global-norm clipping. Epsilon decays
linearly from ``start_e`` to ``end_e`` over ``exploration_fraction`` of the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ratiolab.advantages.episodic import q_lambda
from ratiolab.gym.algorithm import Algorithm, register
from ratiolab.gym.policies import QNetwork

if TYPE_CHECKING:
    from ratiolab.gym.config import GymTrainConfig
    from ratiolab.gym.rollout import VecRunner


def epsilon(step: int, total: int, start: float, end: float, fraction: float) -> float:
    """Linear schedule from ``start`` to ``end`` over the first ``fraction * total`` steps."""
    duration = max(fraction * total, 1.0)
    return start + (end - start) * min(step / duration, 1.0)


@register
class PQN(Algorithm):
    """State and one-iteration logic of PQN (settings: ``cfg.pqn``)."""

    name = "pqn"
    action_spaces = (spaces.Discrete,)

    @classmethod
    def update_steps(cls, cfg: GymTrainConfig) -> int:
        return cfg.pqn.batch_size

    @classmethod
    def env_count(cls, cfg: GymTrainConfig) -> int:
        return cfg.pqn.num_envs

    @classmethod
    def discount(cls, cfg: GymTrainConfig) -> float:
        return cfg.pqn.gamma

    def __init__(self, cfg: GymTrainConfig, runner: VecRunner) -> None:
        super().__init__(cfg, runner)
        self.q = cfg.pqn
        obs_space, act_space = runner.envs.single_observation_space, runner.envs.single_action_space
        assert isinstance(obs_space, spaces.Box) and isinstance(act_space, spaces.Discrete)
        self.obs_dim, self.n_act = int(obs_space.shape[0]), int(act_space.n)
        self.net = QNetwork(self.obs_dim, self.n_act, self.q.hidden)
        self.opt = torch.optim.RAdam(self.net.parameters(), lr=self.q.learning_rate, foreach=True)

    def modules(self) -> dict[str, nn.Module]:
        return {"q": self.net}

    def state_dict(self) -> dict[str, Any]:
        return {"update_idx": self.update_idx, "opt": self.opt.state_dict()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.update_idx = int(s["update_idx"])
        self.opt.load_state_dict(s["opt"])

    def act(self, obs: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            out: np.ndarray = self.net(obs).argmax(-1).numpy()
        return out

    def iterate(self) -> dict[str, float]:
        q, runner = self.q, self.runner
        T, N = q.num_steps, runner.envs.num_envs
        lr = q.learning_rate * (1.0 - self.update_idx / self.num_updates) if q.anneal_lr else q.learning_rate
        for g in self.opt.param_groups:
            g["lr"] = lr
        obs_b = torch.zeros(T, N, self.obs_dim)
        act_b = torch.zeros(T, N, dtype=torch.long)
        rew_b, term_b, done_b, next_q = (torch.zeros(T, N) for _ in range(4))
        step0 = self.update_idx * self.steps_per_update
        trunc_q = torch.zeros(T, N)
        trunc_b = torch.zeros(T, N, dtype=torch.bool)
        with torch.no_grad():
            for t in range(T):
                eps = epsilon(step0 + t * N, self.cfg.total_steps, q.start_e, q.end_e, q.exploration_fraction)
                obs = torch.from_numpy(runner.obs)
                qvals = self.net(obs)
                if t > 0:  # max_a Q(s_t, .) of the acting network is the stored successor value of step t-1
                    next_q[t - 1] = qvals.max(-1).values
                explore = torch.rand(N) < eps
                action = torch.where(explore, torch.randint(0, self.n_act, (N,)), qvals.argmax(-1))
                step = runner.step(action.numpy())
                obs_b[t], act_b[t] = obs, action
                rew_b[t] = torch.from_numpy(step.reward) * q.reward_scale
                term_b[t] = torch.from_numpy(step.terminated)
                done_b[t] = torch.from_numpy(step.done)
                if step.truncated.any():
                    trunc_b[t] = torch.from_numpy(step.truncated)
                    trunc_q[t] = self.net(torch.from_numpy(step.final_obs)).max(-1).values
            next_q[T - 1] = self.net(torch.from_numpy(runner.obs)).max(-1).values
            next_q = torch.where(trunc_b, trunc_q, next_q)
            targets = q_lambda(
                rewards=rew_b,
                next_values=next_q,
                terminated=term_b,
                dones=done_b,
                gamma=q.gamma,
                lam=q.q_lambda,
            )
        B = T * N
        b_obs, b_act, b_tgt = obs_b.reshape(B, -1), act_b.reshape(B), targets.reshape(B)
        mb = B // q.num_minibatches
        total, n = torch.zeros(()), 0
        for _ in range(q.update_epochs):
            perm = torch.randperm(B)
            for start in range(0, B - mb + 1, mb):
                idx = perm[start : start + mb]
                pred = self.net(b_obs[idx]).gather(1, b_act[idx, None])[:, 0]
                loss = 0.5 * (pred - b_tgt[idx]).square().mean()
                self.opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), q.max_grad_norm, foreach=True)
                self.opt.step()
                total += loss.detach()
                n += 1
        self.update_idx += 1
        loss_q, q_mean = torch.stack([total / max(n, 1), b_tgt.mean()]).tolist()  # one host transfer
        metrics = {"loss/q": loss_q, "epsilon": eps, "lr": lr, "q_mean": q_mean}
        metrics.update(runner.pop_episodes())
        return metrics
