"""BRAIn against the worked example of docs/methods/rlhf.md §15 and its DPO special case."""

from __future__ import annotations

import pytest
import torch
from pairs import check_micro_batches, loss_grads, pair, random_batch

from ratiolab.preference import compute
from ratiolab.preference.brain import brain_loss


def test_brain_worked_example_value_and_gradient() -> None:
    # q = SFT = reference (0 here), beta 1, r = [1, 0], LP_theta - log q = [0.1, -0.2]
    b = pair([[0.1]], [[-0.2]], chosen_ref_logp=[[0.0]], rejected_ref_logp=[[0.0]], chosen_reward=[1.0],
             rejected_reward=[0.0])
    loss, gc, gr, m = loss_grads("brain", b, beta=1.0)
    assert loss == pytest.approx(0.6350377, abs=1e-6)
    assert gc == pytest.approx([-0.156616], abs=1e-6) and gr == pytest.approx([0.156616], abs=1e-6)
    assert float(m["brain/target_max"]) == pytest.approx(0.731059, abs=1e-6)


def test_brain_general_n_gradient_is_alpha_minus_b() -> None:
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    log_q, log_sft, r = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    per, _ = brain_loss(lp, log_q, log_sft, r, 0.5)
    (grad,) = torch.autograd.grad(per.sum(), lp)
    alpha = torch.softmax(log_sft + r / 0.5 - log_q, -1)
    b = torch.softmax(lp.detach() - log_q, -1)
    assert torch.allclose(grad, -(alpha - b), atol=1e-12)
    with pytest.raises(ValueError, match="n >= 2"):
        brain_loss(lp[:, :1], log_q[:, :1], log_sft[:, :1], r[:, :1], 1.0)


def test_brain_with_a_hard_target_is_dpo_at_beta_one() -> None:
    # q = SFT and a reward gap large enough that alpha is one-hot on y_w: -log b_w = -log sigma(h)
    b = random_batch(2)
    big = type(b)(**{**b.__dict__, "chosen_reward": torch.full((b.batch_size,), 1e3, dtype=torch.float64),
                     "rejected_reward": torch.zeros(b.batch_size, dtype=torch.float64)})
    assert compute("brain", big, beta=1.0).loss.item() == pytest.approx(compute("dpo", big, beta=1.0).loss.item(),
                                                                        abs=1e-9)


def test_brain_prox_proposal_and_micro_batches() -> None:
    b = random_batch(3)
    assert compute("brain", b, beta=1.0, proposal="prox").loss.item() != pytest.approx(
        compute("brain", b, beta=1.0).loss.item())
    check_micro_batches("brain", beta=0.7, proposal="prox")
    with pytest.raises(ValueError, match=r"requires parameter\(s\) \['beta'\]"):
        compute("brain", b)
