"""PDPPO (arXiv 2504.05150): a post-decision critic ``V^x(s^x)`` with its own optimiser.

The env reports the post-decision state ``info["post_decision_obs"]`` every step; the advantage is
``A = max(R - V^x(s^x), A^pre)`` (:func:`pdppo_advantage`), and after every actor-critic step the
post-decision critic takes one Adam step (``pdppo.critic_learning_rate``) on ``0.5 (V^x(s^x) - R)^2``;
both critics regress the same lambda-return ``R`` [inferred]. Discrete actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces

from ratiolab.gym.algorithm import register
from ratiolab.gym.onpolicy import OnPolicy
from ratiolab.gym.policies import mlp
from ratiolab.gym.rollout import Step

if TYPE_CHECKING:
    from ratiolab.gym.config import GymTrainConfig
    from ratiolab.gym.rollout import VecRunner


def pdppo_advantage(ret: torch.Tensor, post_value: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """PDPPO's ``A = max(R - V^x(s^x), A^pre)``: the larger of the post-decision and pre-decision advantages."""
    return torch.maximum(ret - post_value, adv)


def _post_decision(info: dict[str, Any], done: np.ndarray) -> np.ndarray:
    """``info["post_decision_obs"]`` per env; for envs that just reset it lives in ``final_info``."""
    src = info["final_info"] if done.all() else info
    post = np.array(src["post_decision_obs"], dtype=np.float32, copy=True)
    if done.any() and not done.all():
        for i in np.flatnonzero(done):
            post[i] = info["final_info"]["post_decision_obs"][i]
    return post


@register
class PDPPO(OnPolicy):
    """PDPPO: the ``ppo`` objective on the post-decision advantage."""

    name = "pdppo"
    objective = "ppo"
    action_spaces = (spaces.Discrete,)
    step_info = {"post_decision_obs": "post-decision states"}  # noqa: RUF012  (a class declaration)

    def __init__(self, cfg: GymTrainConfig, runner: VecRunner) -> None:
        super().__init__(cfg, runner)
        post_critic = mlp(self.obs_dim, self.p.hidden, 1, self.p.activation)
        opt = torch.optim.Adam(post_critic.parameters(), lr=cfg.pdppo.critic_learning_rate, eps=1e-5, fused=True)
        self.add_part("post_critic", post_critic, opt)
        self._post: list[np.ndarray] = []

    def on_step(self, t: int, obs: list[torch.Tensor], act: list[torch.Tensor], step: Step) -> None:
        if t == 0:
            self._post = []
        self._post.append(_post_decision(self.runner.last_info, step.done))

    def finish_rollout(self, buf: dict[str, torch.Tensor]) -> None:
        buf["post_obs"] = torch.from_numpy(np.stack(self._post))

    def prepare_batch(self, flat: dict[str, torch.Tensor]) -> None:
        super().prepare_batch(flat)
        post_v = self.extra["post_critic"](flat["post_obs"])[:, 0]
        flat["adv"] = pdppo_advantage(flat["returns"], post_v, flat["adv"])

    def after_step(self, mb: dict[str, torch.Tensor]) -> None:
        loss = 0.5 * (self.extra["post_critic"](mb["post_obs"])[:, 0] - mb["returns"]).square().mean()
        opt = self.extra_opt["post_critic"]
        opt.zero_grad()
        loss.backward()
        opt.step()
