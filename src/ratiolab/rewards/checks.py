"""Input checks shared by the reward-side functions: errors name the function, the field and the fix."""

from __future__ import annotations

import torch


def finite(method: str, name: str, x: torch.Tensor) -> None:
    """``ValueError`` when ``x`` has a NaN or infinite entry (one host sync)."""
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{method}: {name} has {bad} non-finite value(s); a reward model returned NaN/inf: "
                         "drop those samples or zero-weight them (see rewards.ensemble nonfinite='zero')")


def vector(method: str, name: str, x: torch.Tensor, n: int | None = None) -> None:
    """``x`` is a float ``[n]`` tensor (any length when ``n`` is ``None``)."""
    ok = isinstance(x, torch.Tensor) and x.dim() == 1 and x.is_floating_point()
    if not ok or (n is not None and x.numel() != n):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{method}: {name} must be a float [{'B' if n is None else n}] tensor, got {got}")
