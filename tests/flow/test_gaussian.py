"""Gaussian step densities and ratios by hand (1-D), and PolicyFlow's endpoint-ratio example."""

from __future__ import annotations

import math

import pytest
import torch

from ratiolab.flow import endpoint_log_ratio, gaussian_step_logp


def test_step_logp_and_log_ratio_by_hand_1d() -> None:
    x, mu, mu_old, s = torch.tensor([0.6]), torch.tensor([0.3]), torch.tensor([0.2]), 0.5
    expected = -0.09 / 0.5 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
    assert gaussian_step_logp(x, mu, s).item() == pytest.approx(expected)
    log_r = gaussian_step_logp(x, mu, s) - gaussian_step_logp(x, mu_old, s)
    assert log_r.item() == pytest.approx((0.4**2 - 0.3**2) / (2 * 0.25))  # 0.14


def test_step_logp_is_per_dimension_mean() -> None:
    x, mu = torch.tensor([[0.6, -1.0]]), torch.tensor([[0.3, 0.0]])
    one = gaussian_step_logp(x[:, :1], mu[:, :1], 0.5) + gaussian_step_logp(x[:, 1:], mu[:, 1:], 0.5)
    assert gaussian_step_logp(x, mu, 0.5).item() == pytest.approx(one.item() / 2)


def test_policyflow_endpoint_example() -> None:
    a = torch.tensor([1.0], dtype=torch.float64)
    phi, phi_old = torch.tensor([0.9], dtype=torch.float64), torch.tensor([0.8], dtype=torch.float64)
    log_r = endpoint_log_ratio(a, phi, phi_old, 0.5)
    assert log_r.item() == pytest.approx(0.06, abs=1e-9)
    assert log_r.exp().item() == pytest.approx(1.06184, abs=1e-5)


def test_bad_std() -> None:
    with pytest.raises(ValueError, match="step_std must be > 0"):
        gaussian_step_logp(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)
    with pytest.raises(ValueError, match="sigma and sigma_old"):
        endpoint_log_ratio(torch.zeros(1), torch.zeros(1), torch.zeros(1), -1.0)
