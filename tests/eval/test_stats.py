"""The sweep's statistics against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from ratiolab.eval.stats import Interval, paired_t_p, sign_test_p, t_central, t_interval, t_quantile, verdict


def test_t_distribution_against_tables_and_closed_forms() -> None:
    # df 1 is the Cauchy distribution: P(|T| <= t) = 2 atan(t) / pi; df 2: t / sqrt(t^2 + 2)
    assert t_central(1.0, 1) == pytest.approx(0.5, abs=1e-12)
    assert t_central(3.0, 2) == pytest.approx(3.0 / math.sqrt(11.0), abs=1e-12)
    # two-sided 95 % critical values (printed t tables): df 1 12.706, 4 2.776, 36 2.028
    assert t_quantile(0.95, 1) == pytest.approx(12.7062047, abs=1e-6)
    assert t_quantile(0.95, 4) == pytest.approx(2.7764451, abs=1e-6)
    assert t_quantile(0.95, 36) == pytest.approx(2.0280940, abs=1e-6)
    # df 3 (odd series, one cos term): 2/pi [theta + sin cos], theta = atan(2 / sqrt 3) -> 0.860674
    assert t_central(2.0, 3) == pytest.approx(0.8606738, abs=1e-6)


def test_t_interval_and_paired_t_by_hand() -> None:
    # diffs 0.05 0.10 -0.02 0.08 0.04: mean 0.05, deviations 0 .05 -.07 .03 -.01, sum of squares .0084,
    # sd sqrt(.0084 / 4) = .0458258, se = .0204939, half width 2.7764451 * se = .0569002; t = 2.439750,
    # two-sided p (df 4) = 0.0712276 (a numerical integral of the t density gives the same to 1e-12)
    diffs = [0.05, 0.10, -0.02, 0.08, 0.04]
    ci = t_interval(diffs)
    assert (ci.mean, ci.lo, ci.hi, ci.n) == pytest.approx((0.05, -0.0069002, 0.1069002, 5), abs=1e-6)
    assert paired_t_p(diffs) == pytest.approx(0.0712276, abs=1e-6)
    assert t_interval([0.3]).fmt() == "0.300" and math.isnan(paired_t_p([0.3]))
    assert paired_t_p([0.1, 0.1]) == 0.0 and paired_t_p([0.0, 0.0]) == 1.0


def test_exact_sign_test_by_hand() -> None:
    # 19 of 24 positive: 2 * sum_{k<=5} C(24, k) / 2^24 = 2 * 55455 / 16777216 = 0.00661075
    assert sign_test_p([1.0] * 19 + [-1.0] * 5) == pytest.approx(0.00661075, abs=1e-8)
    assert sign_test_p([0.2] * 5) == pytest.approx(2 / 32)  # 5 seeds can never reach p < 0.05
    assert sign_test_p([0.1, -0.1, 0.0]) == 1.0  # the tie is dropped; 1 of 2 -> capped at 1
    assert sign_test_p([0.0]) == 1.0


def test_verdicts() -> None:
    assert verdict(Interval(0.05, 0.01, 0.09, 5), 0.02) == "held"
    assert verdict(Interval(0.0, -0.03, 0.015, 5), 0.02) == "did not hold"  # a gain >= 0.02 is ruled out
    assert verdict(Interval(-0.08, -0.12, -0.04, 5), 0.02) == "did not hold"
    assert verdict(Interval(0.02, -0.01, 0.05, 5), 0.02) == "cannot be told apart"
    assert verdict(Interval(0.0, -0.01, 0.01, 5), 0.02, "equal") == "held"
    assert verdict(Interval(0.05, 0.01, 0.09, 5), 0.02, "equal") == "did not hold"
    assert verdict(Interval(0.0, -0.05, 0.05, 5), 0.02, "equal") == "cannot be told apart"
    assert verdict(Interval(0.5, 0.5, 0.5, 1), 0.02) == "cannot be told apart"
