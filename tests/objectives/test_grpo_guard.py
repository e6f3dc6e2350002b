"""GRPO-Guard (ratio-objectives.md §7): the Gaussian worked example and the grouped ([inferred]) objective."""

from __future__ import annotations

import math

import pytest
import torch
from objcheck import batch, check_all, loss_grad, one_row

from ratiolab.objectives import compute
from ratiolab.objectives.grpo_guard import gaussian_ratio_norm, step_weight
from ratiolab.types import PolicyLossInputs

S = 0.7 * math.sqrt(0.04)
MU_OLD = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=torch.float64)
D_MU = torch.tensor([0.01, -0.02, 0.005, 0.015], dtype=torch.float64)
EPS = torch.tensor([0.5, -1.0, 1.5, 0.2], dtype=torch.float64)


def gaussian_log_ratio(mu: torch.Tensor) -> torch.Tensor:
    """Per-dimension-mean log N(x; mu, s) - log N(x; mu_old, s) at x = mu_old + s eps."""
    x = MU_OLD + S * EPS
    return (((x - MU_OLD) ** 2 - (x - mu) ** 2) / (2 * S**2)).mean()


def test_ratio_norm_worked_example_and_identity() -> None:
    mu = (MU_OLD + D_MU).requires_grad_()
    raw = gaussian_log_ratio(mu)
    assert raw.item() == pytest.approx(0.058610, abs=1e-6)
    norm = gaussian_ratio_norm(raw, mu, MU_OLD, S)
    assert norm.item() == pytest.approx(0.008875, abs=1e-6)
    assert norm.item() == pytest.approx(float((EPS * D_MU).mean()), abs=1e-9)
    assert norm.exp().item() == pytest.approx(1.008914, abs=1e-6)
    assert float(gaussian_ratio_norm(gaussian_log_ratio(MU_OLD), MU_OLD, MU_OLD, S)) == 0.0  # d_mu = 0: r_hat = 1
    detached = gaussian_ratio_norm(raw, mu, MU_OLD, S, drift_bias_grad=False)
    assert detached.item() == pytest.approx(norm.item(), abs=1e-12)


def test_step_weights() -> None:
    assert step_weight("flow_grpo", 0.6, 0.04) == pytest.approx(25.0)
    assert step_weight("dance_grpo", 0.6, 0.04, eta=0.7) == pytest.approx(29.083333, abs=1e-6)


@pytest.mark.parametrize(("adv", "loss", "grad"), [(1.0, -25.025, 0.0), (-1.0, 25.222862, 25.222862)])
def test_reweighted_clipped_loss(adv: float, loss: float, grad: float) -> None:
    log_r_hat = float((EPS * D_MU).mean())
    inputs = one_row([log_r_hat], [0.0], [adv])
    value, g, _ = loss_grad("ppo", inputs, clip_low=1e-3, clip_high=1e-3)
    delta = step_weight("flow_grpo", 0.6, 0.04)
    assert delta * value == pytest.approx(loss, abs=1e-6)
    assert delta * g[0] == pytest.approx(grad, abs=1e-6)


def test_switches_off_is_ppo_and_on_keeps_the_unclipped_gradient() -> None:
    inputs = batch(0, scale=0.4)
    off = compute("grpo_guard", inputs, ratio_norm=False, grad_reweight=False).loss
    assert off.item() == pytest.approx(compute("ppo", inputs).loss.item(), abs=1e-12)
    wide = {"clip_low": 1.0, "clip_high": 100.0}
    g = torch.autograd.grad(compute("grpo_guard", inputs, **wide).loss, inputs.logp)[0]
    g_is = torch.autograd.grad(compute("pg", inputs, importance_ratio=True).loss, inputs.logp)[0]
    assert torch.allclose(g, g_is, atol=1e-12)


@pytest.mark.parametrize("grouping", ["sequence", "turn", "timestep"])
def test_centring_removes_a_group_shift(grouping: str) -> None:
    base = batch(1)
    lp = base.logp.detach()
    shift = {"sequence": torch.arange(7.0)[:, None] * 0.2, "turn": base.turn_ids * 0.5,
             "timestep": torch.arange(6.0)[None, :] * 0.3}[grouping].double()
    inputs = PolicyLossInputs(logp=lp.clone().requires_grad_(), prox_logp=lp - shift, adv=base.adv, mask=base.mask,
                              turn_ids=base.turn_ids)
    m = compute("grpo_guard", inputs, grouping=grouping).metrics
    assert m["clip_frac"] == 0.0
    assert compute("grpo_guard", inputs, grouping=grouping, ratio_norm=False).metrics["clip_frac"] > 0


def test_identity_log_gaps_micro_batches() -> None:
    check_all("grpo_guard")
    check_all("grpo_guard", grouping="turn", grad_reweight=False)


@pytest.mark.parametrize(("params", "match"), [
    ({"grouping": "timestep"}, "timestep.*whole batch"),
    ({"grouping": "prompt"}, "grouping must be one of"),
    ({"clip_high": -0.1}, "grpo_guard: clip_high must be >= 0"),
])
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute("grpo_guard", batch(2).split(2)[0], **params)


def test_bad_schedule_inputs() -> None:
    with pytest.raises(ValueError, match="delta_schedule must be one of"):
        step_weight("linear", 0.5, 0.1)
    with pytest.raises(ValueError, match="need 0 < t <= 1 and dt > 0"):
        step_weight("flow_grpo", 0.0, 0.1)
    with pytest.raises(ValueError, match="step_std must be > 0"):
        gaussian_ratio_norm(torch.zeros(()), MU_OLD, MU_OLD, 0.0)
