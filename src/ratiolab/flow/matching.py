"""Conditional flow matching (arXiv 2210.02747): the imitation loss that warm-starts a flow policy (flow.md §6)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ratiolab.flow.core import denoising_error

Velocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cfm_error(velocity: Velocity, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
              cond: torch.Tensor) -> torch.Tensor:
    """Per-sample ``mean_D ||v(x_t, t, c) - (x1 - x0)||^2`` ``[B]``, ``x_t = (1 - t) x0 + t x1`` (linear path):
    the denoising error of a velocity-parameterised model (the ``err_*`` of the flow losses).

    ``x0`` noise and ``x1`` data ``[B, D]``, ``t`` ``[B]`` in [0, 1], ``cond`` ``[B]``; ``velocity`` is
    e.g. a :class:`ratiolab.flow.sampler.VelocityNet`.
    """
    if x0.shape != x1.shape or x0.dim() != 2 or t.shape != x0.shape[:1]:
        raise ValueError(f"cfm_loss: need x0, x1 [B, D] and t [B], got {tuple(x0.shape)}, {tuple(x1.shape)}, "
                         f"{tuple(t.shape)}")
    xt = (1 - t.unsqueeze(1)) * x0 + t.unsqueeze(1) * x1
    return denoising_error(velocity(xt, t, cond), x1 - x0)


def cfm_loss(velocity: Velocity, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
             cond: torch.Tensor) -> torch.Tensor:
    """``mean_B`` of :func:`cfm_error`: the conditional flow-matching loss."""
    return cfm_error(velocity, x0, x1, t, cond).mean()
