"""Gaussian transition densities and log-ratios of a stochastic sampler's steps.

One denoising step ``x_{k+1} ~ N(mu_theta(x_k, k), s_k^2 I)`` is one "token": its log-probability is the
per-dimension mean of the Gaussian log-density (the Flow-GRPO convention that ``grpo_guard`` expects), so a
trajectory of K steps gives ``[B, K]`` log-probabilities. See docs/methods/flow.md §1.
"""

from __future__ import annotations

import math

import torch


def gaussian_step_logp(x_next: torch.Tensor, mean: torch.Tensor, step_std: float | torch.Tensor) -> torch.Tensor:
    """``mean_d log N(x_next_d; mean_d, s^2) = mean_d [-(x - mu)^2 / (2 s^2)] - log s - log(2 pi) / 2``.

    ``x_next`` and ``mean`` are ``[..., D]``; ``step_std`` is a number or a tensor shaped like ``[...]``.
    """
    s = torch.as_tensor(step_std, dtype=mean.dtype, device=mean.device)
    if not bool(torch.all(s > 0)):
        raise ValueError(f"gaussian_step_logp: step_std must be > 0, got {step_std}")
    if x_next.shape != mean.shape:
        raise ValueError(f"gaussian_step_logp: x_next {tuple(x_next.shape)} and mean {tuple(mean.shape)} must match")
    sq = ((x_next - mean) ** 2).mean(-1)
    return -sq / (2 * s**2) - torch.log(s) - 0.5 * math.log(2 * math.pi)


def endpoint_log_ratio(
    a: torch.Tensor, phi: torch.Tensor, phi_old: torch.Tensor, sigma: float, sigma_old: float | None = None
) -> torch.Tensor:
    """PolicyFlow's endpoint ratio (arXiv 2602.01156): ``log N(a; phi, sigma^2) - log N(a; phi_old, sigma_old^2)``.

    Summed over the last (action) dimension. With ``sigma_old = sigma`` (the default) it is
    ``[(a - phi_old)^2 - (a - phi)^2] / (2 sigma^2)``, a function of the endpoint shift ``phi - phi_old``
    only. A utility, not a registered objective: the paper's velocity-difference estimate of the shift and
    its regulariser are [inferred]/gaps (docs/methods/flow.md §2).
    """
    so = sigma if sigma_old is None else sigma_old
    if sigma <= 0 or so <= 0:
        raise ValueError(f"endpoint_log_ratio: sigma and sigma_old must be > 0, got {sigma}, {so}")
    new = -((a - phi) ** 2) / (2 * sigma**2) - math.log(sigma)
    old = -((a - phi_old) ** 2) / (2 * so**2) - math.log(so)
    return (new - old).sum(-1)
