"""Percentile bootstrap confidence interval of a mean of per-round values (as in OBP, arXiv 2008.07146)."""

from __future__ import annotations

import numpy as np

from ratiolab.ope.validation import FloatArray

_MAX_DRAWS_PER_CHUNK = 4_000_000


def bootstrap_ci(
    values: FloatArray, *, alpha: float = 0.05, n_bootstrap: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(α/2, 1 − α/2) percentiles of the means of ``n_bootstrap`` resamples (with replacement).

    ``n_bootstrap = 0`` skips the interval and returns (nan, nan). Resampling is vectorised in chunks
    of at most 4M draws, so the memory stays bounded for large logs.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap: must be >= 0 (0 skips the interval), got {n_bootstrap}")
    if n_bootstrap == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // n)
    means = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)
