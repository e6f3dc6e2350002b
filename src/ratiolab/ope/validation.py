"""Array checks shared by the OPE inputs and the logged-feedback schema.

Every check raises a ``ValueError`` that names the field, says what is wrong and how to fix it.
Arrays come back as float64 (or int64 for indices) numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def as_float(name: str, value: Any, ndim: int | tuple[int, ...]) -> FloatArray:
    """``value`` as a finite float64 array with ``ndim`` dimensions (one of them if a tuple)."""
    arr = np.asarray(value, dtype=np.float64)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in dims:
        raise ValueError(f"{name}: expected {' or '.join(map(str, dims))} dimensions, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}: {int(bad.sum())} NaN/inf entries (first at index {first}); drop or impute them first"
        )
    return arr


def as_index(name: str, value: Any, ndim: int, upper: int | None = None) -> IntArray:
    """``value`` as an int64 index array with entries in ``[0, upper)``."""
    raw = np.asarray(value)
    if raw.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {raw.shape}")
    integral = np.issubdtype(raw.dtype, np.integer) or (
        np.issubdtype(raw.dtype, np.floating) and bool(np.all(np.isfinite(raw))) and not np.any(raw % 1)
    )
    if not integral:
        raise ValueError(f"{name}: expected integer indices, got dtype {raw.dtype} with non-integer values")
    arr = raw.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: indices must be >= 0, got min {int(arr.min())}")
    if upper is not None and arr.size and arr.max() >= upper:
        raise ValueError(f"{name}: indices must be < {upper}, got max {int(arr.max())}")
    return arr


def as_probability(name: str, value: Any, ndim: int | tuple[int, ...], *, positive: bool) -> FloatArray:
    """Finite probabilities in ``(0, 1]`` (``positive``) or ``[0, 1]``."""
    arr = as_float(name, value, ndim)
    low_bad = arr <= 0 if positive else arr < 0
    if low_bad.any():
        first = tuple(int(i) for i in np.argwhere(low_bad)[0])
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{name}: probabilities must be {bound}; {int(low_bad.sum())} entries are not "
            f"(first at index {first}, value {arr[first]}). Rounds with zero behaviour propensity "
            "carry no information for importance weighting: drop them or fix the logging"
        )
    if (arr > 1 + 1e-12).any():
        raise ValueError(f"{name}: probabilities must be <= 1, got max {arr.max()}")
    return arr


def check_distribution(name: str, dist: FloatArray, axis: int, atol: float = 1e-6) -> None:
    """Raise unless ``dist`` sums to one along ``axis``."""
    sums = dist.sum(axis=axis)
    err = np.abs(sums - 1.0)
    if (err > atol).any():
        raise ValueError(
            f"{name}: must sum to 1 over actions (axis {axis}); max deviation {err.max():.3g}. "
            "Normalise the evaluation policy's action distribution"
        )


def check_rows(name: str, arr: np.ndarray, n_rounds: int) -> None:
    """Raise unless ``arr`` has ``n_rounds`` rows."""
    if arr.shape[0] != n_rounds:
        raise ValueError(f"{name}: expected {n_rounds} rows (one per logged round), got shape {arr.shape}")
