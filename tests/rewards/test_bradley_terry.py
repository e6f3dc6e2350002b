"""Bradley-Terry, Plackett-Luce and PPO-M's CRM loss against docs/methods/rlhf.md §4."""

from __future__ import annotations

import math

import pytest
import torch

from ratiolab.rewards.bradley_terry import bradley_terry_loss, crm_loss, plackett_luce_loss


def t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def test_crm_worked_example() -> None:
    loss, m = crm_loss(t(2.0), t(1.0), t(0.5), t(1.0))
    assert loss.item() == pytest.approx(0.787339, abs=1e-6)
    assert float(m["crm/chosen_conf_acc"]) == 1.0 and float(m["crm/rejected_conf_acc"]) == 1.0


def test_crm_variants_add_their_term() -> None:
    base, _ = crm_loss(t(2.0), t(1.0), t(0.5), t(1.0))
    nll = lambda x: -math.log(1.0 / (1.0 + math.exp(-x)))  # noqa: E731
    comb, _ = crm_loss(t(2.0), t(1.0), t(0.5), t(1.0), variant="combined", chosen=t(1.5), rejected=t(0.0))
    assert float(comb) == pytest.approx(float(base) + nll(1.5), abs=1e-12)
    v1, _ = crm_loss(t(2.0), t(1.0), t(0.5), t(1.0), variant="variant_1")
    assert float(v1) == pytest.approx(float(base) + nll(1.0), abs=1e-12)
    with pytest.raises(ValueError, match="variant='combined' needs chosen= and rejected="):
        crm_loss(t(2.0), t(1.0), t(0.5), t(1.0), variant="combined")


def test_bradley_terry_value_gradient_margin_and_accuracy() -> None:
    c = t(1.0, -0.5).requires_grad_()
    r = t(0.0, 0.5)
    loss, m = bradley_terry_loss(c, r, margin=0.5)
    nll = lambda x: math.log1p(math.exp(-x))  # noqa: E731
    assert loss.item() == pytest.approx((nll(0.5) + nll(-1.5)) / 2, abs=1e-12)
    (g,) = torch.autograd.grad(loss, c)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    assert g.tolist() == pytest.approx([-(1 - sig(0.5)) / 2, -(1 - sig(-1.5)) / 2], abs=1e-12)
    assert float(m["rm/accuracy"]) == 0.5 and float(m["rm/margin"]) == pytest.approx(0.0)


def test_plackett_luce_with_two_items_is_bradley_terry() -> None:
    s = t(0.3, -0.2, 1.0, 0.4).view(2, 2)
    bt, _ = bradley_terry_loss(s[:, 0], s[:, 1])
    assert float(plackett_luce_loss(s)) == pytest.approx(float(bt), abs=1e-12)
    three = t(2.0, 1.0, 0.0)[None]
    want = -(2.0 - math.log(math.exp(2) + math.exp(1) + 1)) - (1.0 - math.log(math.exp(1) + 1))
    assert float(plackett_luce_loss(three)) == pytest.approx(want, abs=1e-12)


def test_nan_scores_and_bad_shapes_are_errors() -> None:
    with pytest.raises(ValueError, match="chosen has 1 non-finite value"):
        bradley_terry_loss(t(float("nan"), 1.0), t(0.0, 0.0))
    with pytest.raises(ValueError, match=r"rejected must be a float \[2\] tensor"):
        bradley_terry_loss(t(1.0, 2.0), t(0.0))
