"""Small-sample statistics for the staleness sweep: t-intervals, the paired t-test, the exact sign test and
the three-way verdict of a claim. Pure Python (no SciPy): Student's t distribution for an integer number of
degrees of freedom has a closed form (Abramowitz & Stegun 26.7.3-26.7.4), inverted by bisection."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["held", "did not hold", "cannot be told apart"]


def t_central(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` >= 1 degrees of freedom and ``t`` >= 0 (A&S 26.7.3-4:
    with ``theta = atan(t / sqrt(df))``, a finite series in ``cos(theta)``)."""
    if df < 1:
        raise ValueError(f"df = {df} must be a positive integer")
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) [1 + 1/2 c^2 + (1 3)/(2 4) c^4 + ... + (1 3 .. df-3)/(2 4 .. df-2) c^(df-2)]
        term = total = 1.0
        for k in range(2, df, 2):
            term *= c2 * (k - 1) / k
            total += term
        return s * total
    # 2/pi [theta + sin(theta) cos(theta) (1 + 2/3 c^2 + (2 4)/(3 5) c^4 + ... up to c^(df-3))], df > 1
    total = 0.0
    if df > 1:
        term = total = 1.0
        for k in range(3, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        total *= s * math.cos(theta)
    return 2.0 / math.pi * (theta + total)


def t_quantile(level: float, df: int) -> float:
    """The ``t`` with ``P(|T| <= t) = level`` (two-sided critical value: ``t_quantile(0.95, 4)`` = 2.776)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level = {level} must lie in (0, 1)")
    lo, hi = 0.0, 1.0
    while t_central(hi, df) < level:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_central(mid, df) < level else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with its two-sided t-interval at ``level`` (``lo == hi == mean`` when n == 1)."""

    mean: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 3) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def t_interval(xs: Sequence[float], level: float = 0.95) -> Interval:
    """``mean ± t_{df=n-1} * sd / sqrt(n)``."""
    if not xs:
        raise ValueError("t_interval needs at least one value")
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Interval(mean, mean, mean, len(xs))
    half = t_quantile(level, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Interval(mean, mean - half, mean + half, len(xs))


def paired_t_p(diffs: Sequence[float]) -> float:
    """Two-sided p-value of the one-sample t-test of the paired differences against 0 (1.0 when they do not
    vary; NaN for fewer than 2)."""
    if len(diffs) < 2:
        return math.nan
    sd = statistics.stdev(diffs)
    mean = statistics.fmean(diffs)
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return 1.0 - t_central(abs(mean) / (sd / math.sqrt(len(diffs))), len(diffs) - 1)


def sign_test_p(diffs: Sequence[float]) -> float:
    """Exact two-sided sign test: ``min(1, 2 P(X <= min(n+, n-)))``, ``X ~ Binomial(n+ + n-, 1/2)``; zero
    differences are dropped (1.0 when none is left)."""
    pos = sum(d > 0 for d in diffs)
    neg = sum(d < 0 for d in diffs)
    n = pos + neg
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * sum(math.comb(n, k) for k in range(min(pos, neg) + 1)) / 2.0**n)


def verdict(ci: Interval, min_effect: float, kind: Literal["greater", "equal"] = "greater") -> Verdict:
    """The claim's verdict from the 95 % interval of its effect.

    ``greater`` (the effect is positive): held when the interval lies above 0; did not hold when it lies
    below ``min_effect`` (a gain of practical size is ruled out, a significant loss included); else cannot
    be told apart. ``equal`` (no difference): held when the interval lies inside ``(-min_effect,
    min_effect)``; did not hold when it excludes 0; else cannot be told apart.
    """
    if ci.n < 2:
        return "cannot be told apart"
    if kind == "greater":
        if ci.lo > 0:
            return "held"
        return "did not hold" if ci.hi < min_effect else "cannot be told apart"
    if -min_effect < ci.lo and ci.hi < min_effect:
        return "held"
    return "did not hold" if ci.lo > 0 or ci.hi < 0 else "cannot be told apart"
