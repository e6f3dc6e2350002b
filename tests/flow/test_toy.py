"""Conditional flow matching by hand, and the 2-D toy: warm start and per-step-ratio RL raise the reward."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ratiolab.flow import FlowPolicy, cfm_loss, toy
from ratiolab.flow.matching import cfm_error


def test_cfm_loss_by_hand() -> None:
    x0, x1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, -1.0]])
    t, c = torch.tensor([0.25]), torch.tensor([0])
    assert cfm_loss(lambda xt, tt, cc: torch.zeros_like(xt), x0, x1, t, c).item() == pytest.approx((4 + 4) / 2)
    seen = {}

    def oracle(xt: torch.Tensor, tt: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
        seen["xt"] = xt
        return x1 - x0

    assert cfm_loss(oracle, x0, x1, t, c).item() == 0.0
    assert torch.allclose(seen["xt"], torch.tensor([[0.5, 0.5]]))  # (1 - t) x0 + t x1
    with pytest.raises(ValueError, match="cfm_loss"):
        cfm_loss(oracle, x0, x1, torch.tensor([0.1, 0.2]), c)


def test_cfm_error_is_per_sample() -> None:
    x0, x1 = torch.zeros(2, 2), torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    err = cfm_error(lambda xt, tt, cc: torch.zeros_like(xt), x0, x1, torch.tensor([0.5, 0.5]), torch.tensor([0, 1]))
    assert err.tolist() == [1.0, 2.0]


def test_warm_start_moves_samples_to_their_modes() -> None:
    torch.manual_seed(0)
    centres, policy = toy.modes(), FlowPolicy(2, 4, hidden=32)
    before = toy.evaluate(policy, centres)
    losses = toy.warm_start(policy, centres, iters=150)
    assert losses[-1] < 0.5 * losses[0]
    assert before < -1.8 and toy.evaluate(policy, centres) > -1.0


@pytest.mark.parametrize(("objective", "params"), [
    ("ppo", {"iters": 30}),
    ("grpo_guard", {"iters": 30, "clip_low": 0.2, "clip_high": 0.2}),
    ("grpo_guard", {"iters": 60, "epochs": 1}),  # eps = 2e-6: in effect one on-policy step per batch
    ("grpo_guard", {"iters": 60, "epochs": 1, "delta_schedule": "dance_grpo"}),
])
def test_rl_on_step_ratios_raises_reward(objective: str, params: dict[str, Any]) -> None:
    torch.manual_seed(0)
    centres, policy = toy.modes(), FlowPolicy(2, 4)
    before = toy.evaluate(policy, centres)
    toy.train(policy, centres, objective, **params)
    assert before < -1.8 and toy.evaluate(policy, centres) > -0.8
