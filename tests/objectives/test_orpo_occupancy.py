"""ORPO occupancy-measure regularisers against docs/methods/rlhf.md §10."""

from __future__ import annotations

import math

import pytest
import torch

from ratiolab.objectives.orpo_occupancy import (
    discriminator_loss,
    discriminator_penalty,
    occupancy_estimates,
    occupancy_regulariser,
    shaped_reward,
    trimmed_mean,
)


def _seq(values: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One token per sequence holding L; a padded second column with garbage."""
    logp = torch.tensor([[v, 5.0] for v in values], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0, 0.0]] * len(values), dtype=torch.float64)
    return logp, torch.zeros_like(logp.detach()), mask


def test_llm_worked_example_and_gradient() -> None:
    logp, ref, mask = _seq([0.5, -0.2])
    kl, chi2 = occupancy_estimates(logp, ref, mask)
    assert kl.item() == pytest.approx(0.0639667, abs=1e-7) and chi2.item() == pytest.approx(0.1476927, abs=1e-7)
    loss, m = occupancy_regulariser(logp, ref, mask, coeff=1.0)
    assert loss.item() == pytest.approx(0.3843081, abs=1e-7)
    (g,) = torch.autograd.grad(loss, logp)
    # d sqrt(chi2)/dL_i = (e^L - e^-L) / (2 n sqrt(chi2))
    want = [(math.exp(v) - math.exp(-v)) / (4 * math.sqrt(chi2.item())) for v in (0.5, -0.2)]
    assert g[:, 0].tolist() == pytest.approx(want, abs=1e-12) and g[:, 1].tolist() == [0.0, 0.0]
    assert float(m["orpo/kl_est"]) == pytest.approx(kl.item())


def test_kl_mode_floor_and_linear_extrapolation() -> None:
    logp, ref, mask = _seq([0.0, 0.0])
    loss, _ = occupancy_regulariser(logp, ref, mask, coeff=2.0)
    assert loss.item() == pytest.approx(2.0 * math.sqrt(1e-4))
    loss, _ = occupancy_regulariser(logp, ref, mask, mode="kl", coeff=2.0)
    assert loss.item() == 0.0
    logp, ref, mask = _seq([12.0])
    _, chi2 = occupancy_estimates(logp, ref, mask, clip=10.0)
    assert chi2.item() == pytest.approx(math.exp(10) * 3 - 1 + math.expm1(-12.0))
    (g,) = torch.autograd.grad(chi2, logp)
    assert g[0, 0].item() == pytest.approx(math.exp(10) - math.exp(-12.0)) and math.isfinite(g[0, 0].item())


def test_discriminator_trimmed_mean_worked_example() -> None:
    d = torch.linspace(-1, 1, 200, dtype=torch.float64)
    assert float(trimmed_mean(torch.expm1(d))) == pytest.approx(0.1697002, abs=1e-7)
    m = 0.1697002
    assert discriminator_penalty(d).tolist() == pytest.approx((torch.expm1(d) / math.sqrt(m)).tolist(), abs=1e-6)
    # fewer than 100 values: no trim (the untrimmed mean), not NaN
    small = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    assert float(trimmed_mean(small)) == pytest.approx(1.0)
    assert discriminator_penalty(small, "kl").tolist() == small.tolist()


def test_discriminator_loss_and_shaped_reward() -> None:
    z = torch.zeros(3, dtype=torch.float64)
    assert float(discriminator_loss(z, z)) == pytest.approx(2 * math.log(2))
    r = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    pen = torch.tensor([0.5, float("inf"), -10.0], dtype=torch.float64)
    out, m = shaped_reward(r, pen, 0.2, reward_clip=4.0)
    assert out.tolist() == pytest.approx([0.9, 0.0, 4.0]) and float(m["orpo/nonfinite"]) == 1.0


def test_bad_inputs() -> None:
    logp, ref, mask = _seq([0.1])
    with pytest.raises(ValueError, match="ref_logp requires grad"):
        occupancy_estimates(logp, logp, mask)
    with pytest.raises(ValueError, match="mode must be one of"):
        occupancy_regulariser(logp, ref, mask, mode="chi2")
    with pytest.raises(ValueError, match="mask has shape"):
        occupancy_estimates(logp, ref, mask[:, :1])
