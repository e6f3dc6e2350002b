"""The registry of denoising-error losses for diffusion/flow policies, and ``compute``.

A loss here is a pure function of per-sample denoising errors ``err = mean_dims ||eps_pred - eps||^2``
(``[B]`` tensors, :func:`denoising_error`) under the policy and a frozen reference, passed by keyword; it
returns ``(scalar loss, detached 0-d metrics)``. Ratio objectives on per-step log-probabilities are not here:
those go through :func:`ratiolab.objectives.compute` with :func:`ratiolab.flow.sampler.step_inputs`.
"""

from __future__ import annotations

from typing import Any

import torch

from ratiolab.registry import Registry
from ratiolab.types import LossOutput

FLOW_LOSSES = Registry("flow loss")


def denoising_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean over all but the batch dim of (pred - target)^2`` -> ``[B]``."""
    if pred.shape != target.shape or pred.dim() < 2:
        raise ValueError(f"denoising_error: pred and target must share a shape [B, ...], got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    return ((pred - target) ** 2).flatten(1).mean(1)


def compute(name: str, **tensors_and_params: Any) -> LossOutput:
    """Loss ``name``; e.g. ``compute("diffusion_dro", err_exp=..., err_exp_ref=..., err_pol=..., err_pol_ref=...)``."""
    p = FLOW_LOSSES.resolve(name, tensors_and_params)
    for key in FLOW_LOSSES.get(name).inputs:
        t = p[key]
        if not isinstance(t, torch.Tensor) or t.dim() != 1:
            raise ValueError(f"flow loss {name!r}: {key} must be a [B] tensor of per-sample denoising errors")
    loss, metrics = FLOW_LOSSES.get(name).fn(**p)
    return LossOutput(loss, metrics)
