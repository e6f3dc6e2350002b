"""PROPS (arXiv 2311.08290): actions come from an adaptive behaviour policy phi, PPO learns theta.

Every ``props.num_steps`` env steps, phi is reset to theta and re-fitted on the rollout so far by
minimising :func:`props_loss` ``L = mean max(r, clip(r))``, ``r = pi_phi / pi_theta`` (``props.epochs``
epochs of ``props.num_minibatches`` minibatches, stopping early once the k3 KL(phi || theta) exceeds
``props.target_kl``); PPO then takes the ratio against log-probs recomputed under theta (the trust
region is around theta, not phi).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from ratiolab.gym.algorithm import register
from ratiolab.gym.onpolicy import OnPolicy
from ratiolab.gym.policies import Actor
from ratiolab.gym.rollout import Step

if TYPE_CHECKING:
    from ratiolab.gym.config import GymTrainConfig
    from ratiolab.gym.rollout import VecRunner


def props_loss(logp_phi: torch.Tensor, logp_theta: torch.Tensor, clip: float) -> torch.Tensor:
    """PROPS behaviour loss ``mean max(r, clip(r, 1 - eps, 1 + eps))``, ``r = pi_phi / pi_theta``."""
    r = torch.exp(logp_phi - logp_theta.detach())
    return torch.maximum(r, r.clamp(1.0 - clip, 1.0 + clip)).mean()


@register
class PROPS(OnPolicy):
    """PROPS: the behaviour policy acts; the ``ppo`` objective on theta's own log-probs."""

    name = "props"
    objective = "ppo"

    def __init__(self, cfg: GymTrainConfig, runner: VecRunner) -> None:
        super().__init__(cfg, runner)
        behaviour = copy.deepcopy(self.actor)
        self.add_part("behaviour", behaviour, torch.optim.Adam(behaviour.parameters(), lr=cfg.props.learning_rate,
                                                               fused=True))

    def behaviour_policy(self) -> Actor:
        behaviour = self.extra["behaviour"]
        assert isinstance(behaviour, Actor)
        return behaviour

    def on_step(self, t: int, obs: list[torch.Tensor], act: list[torch.Tensor], step: Step) -> None:
        n = self.runner.envs.num_envs
        if (t + 1) * n % self.cfg.props.num_steps < n:
            self._adapt_behaviour(torch.stack(obs), torch.stack(act))

    def prepare_batch(self, flat: dict[str, torch.Tensor]) -> None:
        super().prepare_batch(flat)
        flat["logp"] = self.actor.log_prob(self.actor(flat["obs"]), flat["act"])

    def _adapt_behaviour(self, obs: torch.Tensor, act: torch.Tensor) -> None:
        """phi <- theta, then minimise :func:`props_loss` on the rollout so far (KL early stop)."""
        pc = self.cfg.props
        behaviour = self.behaviour_policy()
        behaviour.load_state_dict(self.actor.state_dict())
        obs = obs.reshape(-1, self.obs_dim)
        act = act.reshape(len(obs), *act.shape[2:])
        with torch.no_grad():
            logp_theta = self.actor.log_prob(self.actor(obs), act)
        mb = max(len(obs) // pc.num_minibatches, 1)
        with torch.enable_grad():
            for _ in range(pc.epochs):
                perm = torch.randperm(len(obs))
                for start in range(0, len(obs), mb):
                    idx = perm[start : start + mb]
                    logp_phi = behaviour.log_prob(behaviour(obs[idx]), act[idx])
                    loss = props_loss(logp_phi, logp_theta[idx], pc.clip)
                    self.extra_opt["behaviour"].zero_grad()
                    loss.backward()
                    self.extra_opt["behaviour"].step()
                with torch.no_grad():
                    log_r = behaviour.log_prob(behaviour(obs), act) - logp_theta
                    if float((log_r.exp() - 1 - log_r).mean()) > pc.target_kl:
                        break
