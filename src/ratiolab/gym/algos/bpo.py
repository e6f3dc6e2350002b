"""BPO (arXiv 2604.18578): a two-headed critic (V and the median head U) and the ``bpo`` objective.

The critic's second output U is trained with ``median_loss`` (weight ``ppo.bpo_u_coef``); the target
ratio uses the median advantage ``Q - sg(U)`` with ``Q`` the GAE return.
"""

from __future__ import annotations

from typing import Any

import torch

from ratiolab.gym.algorithm import register
from ratiolab.gym.onpolicy import OnPolicy
from ratiolab.objectives.bpo import median_loss


@register
class BPO(OnPolicy):
    """BPO: critic head 1 is the median head U."""

    name = "bpo"
    objective = "bpo"
    critic_heads = 2

    def objective_inputs(
        self, mb: dict[str, torch.Tensor], params: torch.Tensor, values: torch.Tensor
    ) -> dict[str, Any]:
        return {"target_adv": (mb["returns"] - values[:, 1].detach())[:, None]}

    def extra_loss(
        self, mb: dict[str, torch.Tensor], values: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        u_loss = median_loss(mb["returns"], values[:, 1])
        return self.p.bpo_u_coef * u_loss, {"loss/median": u_loss.detach()}
