"""S-PPO / ST-PPO's clipping-bias pass (arXiv 2511.20718, docs/methods/ratio-objectives.md §6) as a learner hook.

With ``clip_bias_norm`` not ``none``, each optimiser step first back-propagates ``clip_bias_surrogate`` over
every micro-batch (with the mini-batch's global normalisers), takes the global gradient norm ``||C||``
(metric ``clip_bias/grad_norm``) and zeroes the gradients; the loss pass then runs the objective with
``clip_bias_grad_norm = ||C||``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ratiolab.learner.hooks import LearnerHook, Scored, register_hook
from ratiolab.objectives.turn_level import clip_bias_surrogate

if TYPE_CHECKING:
    from ratiolab.learner.lm import LMLearner


@register_hook("clip_bias_norm")
class ClipBiasHook(LearnerHook):
    """The learner part ``clip_bias_norm``: measures ``||C||`` each optimiser step (inactive for ``none``)."""

    def __init__(self, learner: LMLearner) -> None:
        super().__init__(learner)
        #: ``clip_bias_surrogate`` keyword arguments of the first pass (None: a single pass, plain PPO)
        self.args = clip_bias_args(learner.algo.objective, learner.resolved, learner.algo.objective_params)
        self.reuses_forward = self.args is None

    def extra_pass(
        self, s: Scored, micros: tuple[torch.Tensor, ...], counts: tuple[float, float],
        step: dict[str, torch.Tensor | float],
    ) -> dict[str, Any]:
        """``||C||_2`` over the whole mini-batch: back-propagate every micro-batch's ``clip_bias_surrogate``
        (global normalisers), take the global gradient norm, zero the gradients (S-PPO's first pass)."""
        if self.args is None:
            return {}
        lrn = self.learner
        for micro in micros:
            clip_bias_surrogate(lrn._inputs(s, micro, counts), **self.args).backward()
        grads = [p.grad for p in lrn.model.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        lrn.optimizer.zero_grad(set_to_none=True)
        step["clip_bias/grad_norm"] = norm
        return {"clip_bias_grad_norm": norm}


def clip_bias_args(objective: str, params: dict[str, Any], given: dict[str, Any]) -> dict[str, Any] | None:
    """``clip_bias_surrogate`` keyword arguments for ``objective`` with resolved parameters ``params``
    (``given``: the configured ones) when normalisation is on, else ``None``; an objective with a
    ``turn_ratio_mode`` is turn-level."""
    if params["clip_bias_norm"] == "none":
        return None
    if "clip_bias_grad_norm" in given:
        raise ValueError(
            f"algo.objective_params.clip_bias_grad_norm: the learner measures ||C|| for {objective} each optimiser "
            "step; remove it (or set clip_bias_norm: none for plain PPO)"
        )
    turn_level = "turn_ratio_mode" in params
    args = {"turn_level": turn_level, "clip_low": params["clip_low"], "clip_high": params["clip_high"]}
    if turn_level:
        args["turn_ratio_mode"] = params["turn_ratio_mode"]
    return args
