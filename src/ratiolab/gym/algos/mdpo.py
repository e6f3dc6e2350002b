"""On-policy MDPO (arXiv 2005.09814): the ``mdpo`` objective with the exact per-state KL to pi_theta_k.

The objective gets ``kl = KL(pi_theta || pi_theta_k)`` in closed form per state (pi_theta_k: the actor at
the iteration start) and the ``t_k`` schedule over iterations (``iteration``, ``total_iterations``).
"""

from __future__ import annotations

from typing import Any

import torch

from ratiolab.gym.algorithm import register
from ratiolab.gym.onpolicy import OnPolicy


@register
class MDPO(OnPolicy):
    """MDPO: the iteration-start policy as the KL anchor (``needs_old_params``)."""

    name = "mdpo"
    objective = "mdpo"
    needs_old_params = True

    def objective_inputs(
        self, mb: dict[str, torch.Tensor], params: torch.Tensor, values: torch.Tensor
    ) -> dict[str, Any]:
        kl = self.actor.kl(params, mb["old_params"])[:, None]
        return {"kl": kl, "iteration": self.update_idx, "total_iterations": self.num_updates}
