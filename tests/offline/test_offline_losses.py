"""Offline losses against hand-computed numbers (and the PRDC worked example), plus gradient checks."""

from __future__ import annotations

import math

import numpy as np
import torch

from ratiolab.offline.constraint import DatasetConstraint
from ratiolab.offline.losses import awr_loss, expectile_loss, q_scaled_bc_loss, td_target, twin_critic_loss


def test_td_target_and_twin_critic_loss() -> None:
    y = td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([2.0, 5.0]), 0.99)
    torch.testing.assert_close(y, torch.tensor([2.98, 1.0]))
    loss, _ = twin_critic_loss(torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0]), torch.tensor([2.0, 1.0]))
    assert math.isclose(loss.item(), (1 + 0) / 2 + (0 + 1) / 2)


def test_td3bc_actor_loss_by_hand() -> None:
    # Q = (1, 3): mean|Q| = 2, lambda = 2.5 / 2 = 1.25, -lambda * mean Q = -2.5; BC = mean((0.5, 0)^2) = 0.125
    q = torch.tensor([1.0, 3.0], requires_grad=True)
    pi = torch.tensor([[0.5], [0.0]], requires_grad=True)
    loss, m = q_scaled_bc_loss(q, pi, torch.zeros(2, 1), alpha=2.5)
    assert math.isclose(loss.item(), -2.375, rel_tol=1e-6) and math.isclose(m["lambda"].item(), 1.25)
    loss.backward()
    # lambda is detached: dL/dQ_i = -lambda / B; dL/dpi = 2 (pi - a) / (B * act_dim)
    torch.testing.assert_close(q.grad, torch.tensor([-0.625, -0.625]))
    torch.testing.assert_close(pi.grad, torch.tensor([[0.5], [0.0]]))


def test_prdc_worked_example() -> None:
    # data (s, a) = (0, 0.5), (1, -0.5); beta = 2; s = 0.4, pi(s) = 0 -> key (0.8, 0), distances 0.89 and 1.69
    dc = DatasetConstraint(np.array([[0.0], [1.0]]), np.array([[0.5], [-0.5]]), beta=2.0)
    a_hat, d2 = dc.nearest(torch.tensor([[0.4]]), torch.tensor([[0.0]]))
    torch.testing.assert_close(a_hat, torch.tensor([[0.5]]))
    assert math.isclose(d2.item(), 0.89, rel_tol=1e-6)
    # mean|Q| = 10, Q = 10: lambda = 0.25, DC loss 0.25, actor loss -2.5 + 0.25 = -2.25
    loss, m = q_scaled_bc_loss(torch.tensor([10.0]), torch.tensor([[0.0]]), a_hat, alpha=2.5)
    assert math.isclose(loss.item(), -2.25, rel_tol=1e-6) and math.isclose(m["bc_mse"].item(), 0.25)


def test_prdc_neighbour_depends_on_the_policy_action() -> None:
    dc = DatasetConstraint(np.array([[0.0], [0.0]]), np.array([[-1.0], [1.0]]), beta=2.0)
    a_hat, _ = dc.nearest(torch.zeros(2, 1), torch.tensor([[-0.2], [0.3]]))
    torch.testing.assert_close(a_hat, torch.tensor([[-1.0], [1.0]]))


def test_expectile_loss_by_hand() -> None:
    # diff = (-1, 2), tau = 0.7: 0.3 * 1 and 0.7 * 4, mean 1.55
    loss, _ = expectile_loss(torch.tensor([-1.0, 2.0]), 0.7)
    assert math.isclose(loss.item(), 1.55, rel_tol=1e-6)
    # tau = 0.5 is half the mean squared error
    d = torch.randn(7)
    torch.testing.assert_close(expectile_loss(d, 0.5)[0], 0.5 * d.square().mean())


def test_awr_loss_by_hand_and_clip() -> None:
    # A = (0, 1), beta 3: weights (1, e^3); log pi = (-1, -2) -> (1 + 2 e^3) / 2
    loss, _ = awr_loss(torch.tensor([0.0, 1.0]), torch.tensor([-1.0, -2.0]), 3.0)
    assert math.isclose(loss.item(), (1 + 2 * math.exp(3)) / 2, rel_tol=1e-6)
    # A = 2 gives exp(6) = 403 > 100: clipped
    loss, m = awr_loss(torch.tensor([2.0]), torch.tensor([-1.0]), 3.0)
    assert math.isclose(loss.item(), 100.0) and m["awr_clip_frac"].item() == 1.0


def test_gradient_checks() -> None:
    torch.manual_seed(0)
    q = torch.randn(5, dtype=torch.float64)
    target = torch.randn(5, 2, dtype=torch.float64)
    pi = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: q_scaled_bc_loss(q, p, target, 2.5)[0], (pi,))
    diff = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: expectile_loss(d, 0.7)[0], (diff,))
    logp = torch.randn(6, dtype=torch.float64, requires_grad=True)
    adv = torch.randn(6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda lp: awr_loss(adv, lp, 3.0)[0], (logp,))
    q1 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    q2 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: twin_critic_loss(a, b, y)[0], (q1, q2))
    # the advantage weights carry no gradient
    a = torch.randn(3, requires_grad=True)
    lp = torch.randn(3, requires_grad=True)
    awr_loss(a, lp, 3.0)[0].backward()
    assert a.grad is None and lp.grad is not None
