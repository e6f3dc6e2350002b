"""DPO against the worked example of docs/methods/rlhf.md §16.1, its gradient and its metrics."""

from __future__ import annotations

import math

import pytest
import torch
from pairs import check_micro_batches, loss_grads, pair, random_batch

from ratiolab.preference import compute


def _example(**kw: float) -> tuple[float, list[float], list[float], dict]:
    # sequence log-probs: policy (-10, -12), reference (-11, -11); spread over two tokens per response
    b = pair([[-4.0, -6.0]], [[-5.0, -7.0]], chosen_ref_logp=[[-5.0, -6.0]], rejected_ref_logp=[[-5.5, -5.5]])
    return loss_grads("dpo", b, beta=0.1, **kw)


def test_dpo_worked_example_value_gradient_and_metrics() -> None:
    loss, gc, gr, m = _example()
    assert loss == pytest.approx(0.5981389, abs=1e-6)
    # dL/dLP_w = -beta sigma(-beta h), h = 2, on every token of y_w; the opposite on y_l
    g = -0.1 / (1.0 + math.exp(0.2))
    assert gc == pytest.approx([g, g], abs=1e-12) and gr == pytest.approx([-g, -g], abs=1e-12)
    assert float(m["dpo/reward_chosen"]) == pytest.approx(0.1)
    assert float(m["dpo/reward_rejected"]) == pytest.approx(-0.1)
    assert float(m["dpo/margin"]) == pytest.approx(0.2)
    assert float(m["dpo/accuracy"]) == 1.0


def test_dpo_label_smoothing_mixes_both_directions() -> None:
    loss, *_ = _example(label_smoothing=0.25)
    lo = lambda x: -math.log(1.0 / (1.0 + math.exp(-x)))  # noqa: E731
    assert loss == pytest.approx(0.75 * lo(0.2) + 0.25 * lo(-0.2), abs=1e-12)


def test_dpo_mask_excludes_padding_from_the_sequence_sums() -> None:
    b = random_batch(0)
    cut = b.chosen_logp.detach().clone()
    cut[b.chosen_mask == 0] = 123.0  # garbage on padding must not matter
    moved = type(b)(**{**b.__dict__, "chosen_logp": cut.requires_grad_()})
    assert compute("dpo", b).loss.item() == pytest.approx(compute("dpo", moved).loss.item(), abs=1e-12)


def test_dpo_position_level_averages_every_position_padding_included() -> None:
    b = pair([[-1.0, -2.0]], [[-1.5, -1.0]], chosen_ref_logp=[[-1.2, -2.0]], rejected_ref_logp=[[-1.0, -1.0]])
    b = type(b)(**{**b.__dict__, "rejected_mask": torch.tensor([[1.0, 0.0]], dtype=torch.float64)})
    loss, *_ = loss_grads("dpo", b, level="position", beta=1.0)
    sp = lambda x: math.log1p(math.exp(-x))  # noqa: E731 (-log sigma)
    assert loss == pytest.approx((sp(0.2 - (-0.5)) + sp(0.0)) / 2, abs=1e-12)
    unequal = random_batch(1)
    with pytest.raises(ValueError, match="level='position' needs chosen and rejected of equal shape"):
        compute("dpo", unequal, level="position")


def test_dpo_micro_batches_sum_to_the_full_batch() -> None:
    check_micro_batches("dpo")


def test_dpo_rejects_bad_parameters_and_missing_reference() -> None:
    b = pair([[-1.0]], [[-2.0]])
    with pytest.raises(ValueError, match=r"needs inputs\.chosen_ref_logp, inputs\.rejected_ref_logp"):
        compute("dpo", b)
    full = random_batch(0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        compute("dpo", full, beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        compute("dpo", full, label_smoothing=0.5)
