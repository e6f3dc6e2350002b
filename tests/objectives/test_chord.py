"""CHORD (arXiv 2508.11408, docs/methods/rlhf.md §3): the mu schedule, the phi-weighted SFT loss and the mix."""

from __future__ import annotations

import pytest
import torch

from ratiolab.objectives import OBJECTIVES, compute
from ratiolab.objectives.chord import MuSchedule, mix, sft_loss
from ratiolab.types import PolicyLossInputs


def test_mu_schedule_worked_example() -> None:
    mu = MuSchedule(warmup=200, decay=400, peak=0.5, valley=0.02)
    got = [mu(s) for s in (0, 100, 200, 400, 599, 600)]
    assert got == pytest.approx([0.0, 0.25, 0.5, 0.26, 0.0200074, 0.02], abs=1e-7)
    preset = MuSchedule.of(OBJECTIVES.resolve("chord_mu", {}))  # CHORD-mu: w 0, d 200, 0.9 -> 0.05
    assert [preset(s) for s in (0, 100, 200)] == pytest.approx([0.9, 0.475, 0.05], abs=1e-12)
    assert [MuSchedule()(s) for s in (0, 7, 10_000)] == [0.1, 0.1, 0.1]  # class defaults: constant 0.1


def test_sft_loss_worked_example_and_mix() -> None:
    logp = torch.log(torch.tensor([[0.9, 0.5, 0.1]], dtype=torch.float64))
    ones = torch.ones(1, 3, dtype=torch.float64)
    assert float(sft_loss(logp, ones)[0]) == pytest.approx(0.1300006, abs=1e-7)  # phi = [0.09, 0.25, 0.09]
    assert float(sft_loss(logp, ones, "none")[0]) == pytest.approx(1.0336976, abs=1e-7)
    assert float(sft_loss(logp, ones, "is")[0]) == pytest.approx(-(0.9 * logp[0, 0] + 0.5 * logp[0, 1]
                                                                   + 0.1 * logp[0, 2]).item() / 3, abs=1e-12)
    assert mix(0.4, 0.25, 0.25) == pytest.approx(0.3625, abs=1e-12)


def test_sft_weight_carries_no_gradient() -> None:
    # d/dlogp_t of -logp_t sg[phi(p_t)] / N is -phi(p_t) / N: phi is a fixed weight, not differentiated
    p = torch.tensor([[0.9, 0.5, 0.1, 0.3]], dtype=torch.float64)
    logp = p.log().requires_grad_()
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    loss, _ = sft_loss(logp, mask, "phi", num_tokens=5.0)  # a minibatch normaliser larger than this micro-batch
    (g,) = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(g, -(p * (1 - p)) * mask / 5.0, atol=1e-15, rtol=0)


def test_chord_objective_is_one_minus_mu_times_ppo() -> None:
    torch.manual_seed(0)
    lp = torch.randn(3, 4, dtype=torch.float64) * 0.3 - 1.0
    inputs = PolicyLossInputs(logp=lp.clone().requires_grad_(), prox_logp=lp + 0.2 * torch.randn_like(lp),
                              adv=torch.randn(3, 4, dtype=torch.float64), mask=torch.ones(3, 4, dtype=torch.float64))
    params = dict(mu_warmup=200, mu_decay=400, mu_peak=0.5, mu_valley=0.02)
    out = compute("chord", inputs, step=100, **params)  # mu(100) = 0.25
    ppo = compute("ppo", inputs)
    assert out.loss.item() == pytest.approx(0.75 * ppo.loss.item(), abs=1e-12)
    assert out.metrics["chord/mu"] == pytest.approx(0.25)
    assert compute("chord", inputs, step=0, **params).loss.item() == pytest.approx(ppo.loss.item(), abs=1e-12)


@pytest.mark.parametrize(("params", "match"), [
    ({"mu_peak": 1.5}, r"mu_peak = 1.5 must lie in \[0, 1\]"),
    ({"mu_decay": -1}, "mu_decay = -1 must be >= 0"),
    ({"sft_weighting": "phii"}, "sft_weighting = 'phii' is not one of"),
])
def test_bad_parameters_name_the_field(params: dict, match: str) -> None:
    ones = torch.ones(1, 2)
    inputs = PolicyLossInputs(logp=torch.zeros(1, 2, requires_grad=True), prox_logp=torch.zeros(1, 2), adv=ones,
                              mask=ones)
    with pytest.raises(ValueError, match=match):
        compute("chord", inputs, **params)
