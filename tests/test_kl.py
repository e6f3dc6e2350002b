"""KL estimators (baselines.md §2): k1/k2/k3 at lr = 0.2 are 0.2 / 0.02 / 0.0187308."""

from __future__ import annotations

import pytest
import torch

from ratiolab import kl


@pytest.mark.parametrize(("kind", "expected"), [("k1", 0.2), ("k2", 0.02), ("k3", 0.0187308)])
def test_worked_example(kind: str, expected: float) -> None:
    out = kl.estimate(kind, torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
    assert out.item() == pytest.approx(expected, abs=1e-7)


def test_k2_k3_nonnegative_and_k3_unbiased_for_true_kl() -> None:
    g = torch.Generator().manual_seed(0)
    lr = torch.randn(1000, generator=g, dtype=torch.float64) * 3
    for kind in ("k2", "k3"):
        assert bool((kl.estimate(kind, lr, torch.zeros_like(lr)) >= 0).all())
    # samples from p = N(0,1) logits over 4 actions: E_p[k3] = KL(p || q)
    p = torch.softmax(torch.tensor([0.3, -1.0, 0.5, 0.0], dtype=torch.float64), 0)
    q = torch.softmax(torch.tensor([0.0, 0.2, -0.4, 0.1], dtype=torch.float64), 0)
    exact = float((p * (p.log() - q.log())).sum())
    k3_expect = float((p * kl.estimate("k3", p.log(), q.log())).sum())
    k1_expect = float((p * kl.estimate("k1", p.log(), q.log())).sum())
    assert k3_expect == pytest.approx(exact, abs=1e-12) and k1_expect == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize("gap", [50.0, -50.0])
def test_large_gaps_stay_finite_with_finite_gradient(gap: float) -> None:
    logp = torch.tensor([gap], dtype=torch.float32, requires_grad=True)
    out = kl.estimate("k3", logp, torch.zeros(1))
    out.sum().backward()
    assert torch.isfinite(out).all() and logp.grad is not None and torch.isfinite(logp.grad).all()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'; valid kinds: k1, k2, k3"):
        kl.estimate("k4", torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="does not match"):
        kl.estimate("k1", torch.zeros(2), torch.zeros(3))
