"""Diffusion-DRO (arXiv 2510.18353): a hinge ranking loss between expert and policy denoising errors (flow.md §4)."""

from __future__ import annotations

import torch

from ratiolab.flow.core import FLOW_LOSSES

ERRORS = ("err_exp", "err_exp_ref", "err_pol", "err_pol_ref")


@FLOW_LOSSES.register(
    "diffusion_dro",
    arxiv="2510.18353",
    summary="hinge: expert's denoising-error gain over the reference must beat the policy sample's by a margin",
    inputs=ERRORS,
)
def diffusion_dro(
    *, err_exp: torch.Tensor, err_exp_ref: torch.Tensor, err_pol: torch.Tensor, err_pol_ref: torch.Tensor,
    margin: float = 0.001,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``L = mean_B max(0, [l_theta(exp) - l_ref(exp)] - [l_theta(pol) - l_ref(pol)] + margin)``, [verified: code].

    ``err_*`` are ``[B]`` denoising errors (:func:`ratiolab.flow.core.denoising_error`) of forward-noised
    expert samples and of (replayed) policy samples, under pi_theta and the frozen reference. Minimising
    lowers the expert's error relative to the reference and raises the policy sample's. Margin 0.001 is
    the official default.
    """
    if margin < 0:
        raise ValueError(f"diffusion_dro: margin must be >= 0, got {margin}")
    gap = (err_exp - err_exp_ref) - (err_pol - err_pol_ref) + margin
    hinge = torch.relu(gap)
    return hinge.mean(), {"diffusion_dro/active_frac": (gap > 0).float().mean().detach(),
                          "diffusion_dro/gap_mean": gap.detach().mean()}
