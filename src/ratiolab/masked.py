"""Masked reductions over ``[B, T]`` tensors (a float mask, 1 = valid token)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(m * x) / sum(m)``; 0 for an empty mask."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def last_valid(mask: torch.Tensor) -> torch.Tensor:
    """One-hot ``[B, T]`` of the last valid token of each row (all 0 for an empty row)."""
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, idx, torch.full_like(idx, -1)).max(-1, keepdim=True).values
    return (idx == last).to(mask.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, ddof: int = 0) -> torch.Tensor:
    """Masked variance with ``ddof`` (0: population, 1: unbiased)."""
    n = mask.sum()
    mu = masked_mean(x, mask)
    return (((x - mu) ** 2) * mask).sum() / (n - ddof).clamp(min=1.0)


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, *, ddof: int = 0, eps: float = 1e-8, shift_mean: bool = True
) -> torch.Tensor:
    """``(x - mean_m(x)) / sqrt(var_m(x) + eps)``; with ``shift_mean=False`` the mean is added back.

    The default ``ddof=0`` (population variance) is MOSS-RLHF's ``whiten``; verl's and TRL's
    ``masked_whiten`` use the unbiased variance (``unbiased=True``, Bessel's n / (n - 1)), which is
    ``ddof=1`` here. The two differ by a factor sqrt(n / (n - 1)) in the whitened values.
    """
    if ddof not in (0, 1):
        raise ValueError(f"masked_whiten: ddof must be 0 or 1, got {ddof}")
    mu = masked_mean(x, mask)
    out = (x - mu) * torch.rsqrt(masked_var(x, mask, ddof) + eps)
    if not shift_mean:
        out = out + mu
    return out * mask


def masked_stats(values: Mapping[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean, min, max and 99th percentile over the valid tokens (``mask > 0``) of each finite tensor in
    ``values`` (shaped like ``mask``), as ``{name}/{stat}`` (0-d float64 tensors, all 0 for an empty mask),
    without a host sync.

    The tensors are stacked and reduced together (one sum, one min, one ``topk``), so the number of
    operations does not grow with their number. Min, max and the order statistics are exact in the input
    dtype; the mean and the interpolation run in float64. The percentile interpolates linearly between order
    statistics (``torch.quantile``'s rule): with ``n`` valid values, ``pos = 0.99 (n - 1)`` lies among the
    top ``ceil(0.01 numel) + 2`` values, so a ``topk`` of that static size replaces a full sort (its first
    value is the max); counted from the top, ``pos`` sits at ``q = n - 1 - pos``, and the top values are
    weighted by ``max(0, 1 - |j - q|)``.
    """
    valid = (mask > 0).flatten()
    v = torch.stack([x.detach() for x in values.values()]).flatten(1)
    hide = torch.where(valid, 0.0, math.inf)  # + hide: invalid values never the min; - hide: never on top
    n = valid.sum().double()
    mean = (v * valid).sum(1, dtype=torch.float64) / n.clamp(min=1.0)
    vmin = (v + hide).amin(1)
    top = torch.topk(v.sub_(hide), min(v.shape[1], math.ceil(0.01 * v.shape[1]) + 2), dim=1).values
    last = n - 1.0
    q = last - 0.99 * last
    weights = (1.0 - (torch.arange(top.shape[1], dtype=torch.float64, device=v.device) - q).abs()).clamp(min=0.0)
    p99 = (top.clamp(min=torch.finfo(top.dtype).min) * weights).sum(1)  # past n the top is -inf, weighted 0
    stats = torch.stack([mean, vmin, top[:, 0], p99], 1)
    keys = [f"{p}/{k}" for p in values for k in ("mean", "min", "max", "p99")]
    return dict(zip(keys, torch.where(n > 0, stats, 0.0).flatten().unbind(), strict=True))


def masked_frac(cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of valid tokens where ``cond`` holds (a detached 0-d tensor)."""
    return masked_mean(cond.detach().to(mask.dtype), mask.detach())


def as_metric(value: float, like: torch.Tensor) -> torch.Tensor:
    """A host number as a 0-d float64 metric tensor on ``like``'s device (a fill: no host-to-device copy)."""
    return like.new_full((), float(value), dtype=torch.float64)
