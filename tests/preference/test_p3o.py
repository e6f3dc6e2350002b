"""P3O against the worked examples of docs/methods/ratio-objectives.md §13 and its stated properties."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from pairs import check_micro_batches, loss_grads, pair, random_batch

from ratiolab.preference import PreferenceBatch, compute

OLD1, REF1 = [-1.0, -1.2, -0.5], [-1.1, -1.0, -0.6]
OLD2, REF2 = [-0.5, -1.4], [-0.7, -1.3]


def _batch(lp1: list[float], lp2: list[float]) -> PreferenceBatch:
    return pair([lp1], [lp2], chosen_prox_logp=[OLD1], rejected_prox_logp=[OLD2], chosen_ref_logp=[REF1],
                rejected_ref_logp=[REF2], chosen_reward=[1.5], rejected_reward=[0.5])


EXAMPLE_A = ([-0.9, -1.1, -0.4], [-0.6, -1.5])
EXAMPLE_B = ([-0.9, -1.2, -0.5], [-0.5, -1.4])


def test_p3o_joint_example_a_clip_active_zero_gradient() -> None:
    loss, gc, gr, m = loss_grads("p3o", _batch(*EXAMPLE_A))
    assert loss == pytest.approx(-0.054153, abs=1e-6)
    assert gc == [0.0] * 3 and gr == [0.0] * 2
    assert float(m["p3o/q_mean"]) == pytest.approx(0.98)
    assert float(m["p3o/pair_weight_mean"]) == pytest.approx(1.105171, abs=1e-6)
    assert float(m["p3o/clip_frac"]) == 1.0


def test_p3o_separate_example_a() -> None:
    loss, gc, gr, m = loss_grads("p3o", _batch(*EXAMPLE_A), clip="separate")
    assert loss == pytest.approx(0.064984, abs=1e-6)
    assert gc == pytest.approx([-0.216613] * 3, abs=1e-6) and gr == pytest.approx([0.216613] * 2, abs=1e-6)
    assert float(m["p3o/clip_frac"]) == 0.0


def test_p3o_example_b_joint_and_separate() -> None:
    loss, gc, gr, m = loss_grads("p3o", _batch(*EXAMPLE_B))
    assert loss == pytest.approx(0.0, abs=1e-12)
    assert gc == pytest.approx([-0.552585] * 3, abs=1e-6) and gr == pytest.approx([0.552585] * 2, abs=1e-6)
    assert float(m["p3o/clip_frac"]) == 0.0
    loss, gc, gr, _ = loss_grads("p3o", _batch(*EXAMPLE_B), clip="separate")
    assert loss == pytest.approx(0.154724, abs=1e-6)
    assert gc == pytest.approx([-0.221034] * 3, abs=1e-6) and gr == pytest.approx([0.221034] * 2, abs=1e-6)


def _swap(b: PreferenceBatch) -> PreferenceBatch:
    names = ("logp", "mask", "prox_logp", "ref_logp", "reward")
    return replace(b, **{f"chosen_{n}": getattr(b, f"rejected_{n}") for n in names},
                   **{f"rejected_{n}": getattr(b, f"chosen_{n}") for n in names})


@pytest.mark.parametrize("clip", ["joint", "separate"])
def test_p3o_reward_shift_and_swap_invariance(clip: str) -> None:
    b = random_batch(4, tc=4, tr=4)
    base = compute("p3o", b, clip=clip).loss.item()
    shifted = replace(b, chosen_reward=b.chosen_reward + 3.0, rejected_reward=b.rejected_reward + 3.0)
    assert compute("p3o", shifted, clip=clip).loss.item() == pytest.approx(base, abs=1e-12)
    assert compute("p3o", _swap(b), clip=clip).loss.item() == pytest.approx(base, abs=1e-12)


def test_p3o_unclipped_joint_gradient_is_the_weighted_pairwise_gradient() -> None:
    b = random_batch(5)
    b = replace(b, chosen_prox_logp=b.chosen_logp.detach() + 0.01, rejected_prox_logp=b.rejected_logp.detach())
    _, gc, gr, m = loss_grads("p3o", b, clip_eps=1.0)
    assert float(m["p3o/clip_frac"]) == 0.0
    lr1 = ((b.chosen_logp - b.chosen_ref_logp) * b.chosen_mask).sum(-1).detach()
    lr2 = ((b.rejected_logp - b.rejected_ref_logp) * b.rejected_mask).sum(-1).detach()
    q = b.chosen_reward - b.rejected_reward - 0.05 * (lr1 - lr2)
    w = torch.exp(torch.full_like(q, -0.01) * b.chosen_mask.sum(-1))
    coef = -(q * w / 2) / b.batch_size
    as_t = lambda g, like: torch.tensor(g, dtype=torch.float64).view_as(like)  # noqa: E731
    assert torch.allclose(as_t(gc, b.chosen_logp), coef[:, None] * b.chosen_mask, atol=1e-12)
    assert torch.allclose(as_t(gr, b.rejected_logp), -coef[:, None] * b.rejected_mask, atol=1e-12)


def test_p3o_pair_weight_is_capped() -> None:
    b = random_batch(6)
    far = replace(b, chosen_prox_logp=b.chosen_logp.detach() - 5.0)
    m = compute("p3o", far, ratio_cap=2.0).metrics
    assert float(m["p3o/pair_weight_mean"]) == pytest.approx(2.0) and float(m["p3o/pair_weight_cap_frac"]) == 1.0


@pytest.mark.parametrize("clip", ["joint", "separate"])
def test_p3o_micro_batches_sum_to_the_full_batch(clip: str) -> None:
    check_micro_batches("p3o", clip=clip)


def test_p3o_needs_rewards_and_old_logits() -> None:
    b = random_batch(0)
    with pytest.raises(ValueError, match=r"inputs\.chosen_reward"):
        compute("p3o", replace(b, chosen_reward=None, rejected_reward=None))
    with pytest.raises(ValueError, match=r"inputs\.chosen_prox_logp"):
        compute("p3o", replace(b, chosen_prox_logp=None, rejected_prox_logp=None))
    with pytest.raises(ValueError, match="clip must be one of"):
        compute("p3o", b, clip="tokenwise")
