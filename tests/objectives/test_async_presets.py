"""PPO-EWMA and decoupled PPO (async-correction.md §5, §7, [verified: code]): examples and the IS cap."""

from __future__ import annotations

import math

import pytest
import torch
from objcheck import batch, check_all, loss_grad, one_row

from ratiolab.objectives import compute, names
from ratiolab.objectives.async_presets import OLD_LOGITS_BINDING
from ratiolab.types import PolicyLossInputs

LOGP, ADV = [-1.0, -0.5, -2.0], [1.0, -1.0, 0.5]
PROX, BEHAV = [-1.1, -0.45, -1.8], [-1.3, -0.35, -1.45]


def reference_ppo_ewma(inputs: PolicyLossInputs, clip: float, is_max: float) -> torch.Tensor:
    """The original per-sample loss transcribed from the specification (mean over valid tokens)."""
    lp, prox, mu, a = inputs.logp, inputs.prox_logp, inputs.behav_logp, inputs.adv
    assert mu is not None
    mu_adj = torch.maximum(mu, lp.detach() - math.log(is_max))
    clipped = (lp - prox).clamp(math.log(1 - clip), math.log(1 + clip)) + prox - mu_adj
    per = torch.maximum(-a * torch.exp(lp - mu_adj), -a * torch.exp(clipped))
    return (per * inputs.mask).sum() / inputs.mask.sum()


def test_ppo_ewma_worked_example() -> None:
    loss, grad, m = loss_grad("ppo_ewma", one_row(LOGP, PROX, ADV, behav_logp=BEHAV))
    assert loss == pytest.approx(-0.259209, abs=1e-6)
    assert grad == pytest.approx([-0.449953, 0.286903, -0.096158], abs=1e-6)
    assert m["ppo_ewma/is_cap_frac"] == 0.0
    per_sample = loss_grad("ppo_ewma", one_row(LOGP, PROX, ADV, behav_logp=BEHAV), aggregation="seq-mean-token-sum")
    assert per_sample[0] == pytest.approx(-1.349859 + 0.860708 - 0.288475, abs=1e-6)


@pytest.mark.parametrize("is_max", [100.0, 1.3, 1.05])
def test_ppo_ewma_matches_the_original_formula_with_the_cap(is_max: float) -> None:
    inputs = batch(0, scale=0.5)
    out = compute("ppo_ewma", inputs, is_max=is_max)
    ref = reference_ppo_ewma(inputs, 0.2, is_max)
    assert out.loss.item() == pytest.approx(ref.item(), abs=1e-12)
    g = torch.autograd.grad(out.loss, inputs.logp)[0]
    assert torch.allclose(g, torch.autograd.grad(ref, inputs.logp)[0], atol=1e-12)
    assert (out.metrics["ppo_ewma/is_cap_frac"] > 0) == (is_max < 2)


def test_decoupled_ppo_recompute_row_and_cap() -> None:
    inputs = one_row(LOGP, PROX, ADV, behav_logp=BEHAV)
    assert loss_grad("decoupled_ppo", inputs)[0] == pytest.approx(-0.259209, abs=1e-6)
    loss, grad, m = loss_grad("decoupled_ppo", inputs, behav_imp_weight_cap=1.15)  # w_1 = 1.2214 dropped
    assert loss == pytest.approx((0.860708 - 0.288475) / 3, abs=1e-6)
    assert grad == pytest.approx([0.0, 0.286903, -0.096158], abs=1e-6)
    assert m["decoupled_ppo/behav_cap_frac"] == pytest.approx(1 / 3)
    exact = one_row(LOGP, [-1.2, -0.4, -1.5], ADV, behav_logp=BEHAV)
    assert loss_grad("decoupled_ppo", exact)[0] == pytest.approx(-0.251324, abs=1e-6)


def test_old_logits_binding_names_registered_objectives() -> None:
    assert OLD_LOGITS_BINDING == {"ppo_ewma": "ewma", "decoupled_ppo": "snapshot"}
    assert set(OLD_LOGITS_BINDING) <= set(names())


@pytest.mark.parametrize(("name", "params"), [("ppo_ewma", {}), ("ppo_ewma", {"is_max": 1.2}),
                                              ("decoupled_ppo", {"behav_imp_weight_cap": 1.3, "dual_clip_c": 3.0})])
def test_identity_log_gaps_micro_batches(name: str, params: dict) -> None:
    check_all(name, **params)


@pytest.mark.parametrize(("name", "params", "match"), [
    ("ppo_ewma", {"clip": 0.0}, r"ppo_ewma: clip must be in \(0, 1\)"),
    ("ppo_ewma", {"is_max": 1.0}, "ppo_ewma: is_max must be > 1"),
    ("decoupled_ppo", {"behav_imp_weight_cap": 0.5}, "decoupled_ppo: behav_imp_weight_cap must be > 1"),
])
def test_bad_parameters(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute(name, batch(1), **params)
