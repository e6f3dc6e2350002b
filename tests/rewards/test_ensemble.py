"""Reward-model ensembles (mean, WCO, UWO) against docs/methods/rlhf.md §9."""

from __future__ import annotations

import pytest
import torch

from ratiolab.rewards.ensemble import UWO_BON, UWO_PPO, ensemble_reward

S = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)


def test_worked_example() -> None:
    assert float(ensemble_reward(S, "mean").reward) == pytest.approx(2.333333, abs=1e-6)
    assert float(ensemble_reward(S, "wco").reward) == 1.0
    assert float(ensemble_reward(S, "uwo", **UWO_PPO).reward) == pytest.approx(2.1, abs=1e-12)
    assert float(ensemble_reward(S, "uwo", **UWO_BON).reward) == pytest.approx(1.555556, abs=1e-6)


def test_agreeing_members_give_their_score_in_every_mode() -> None:
    same = torch.tensor([[0.7, 0.7], [-2.0, -2.0]], dtype=torch.float64)
    for mode in ("mean", "wco", "uwo"):
        assert ensemble_reward(same, mode).reward.tolist() == pytest.approx([0.7, -2.0], abs=1e-12)


def test_nonfinite_member_is_an_error_or_a_counted_zero_weight_row() -> None:
    bad = torch.tensor([[1.0, float("nan")], [1.0, 3.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="1 row\\(s\\) of scores have a non-finite member score"):
        ensemble_reward(bad)
    out = ensemble_reward(bad, "uwo", nonfinite="zero")
    assert out.weight.tolist() == [0.0, 1.0] and out.reward.tolist() == pytest.approx([0.0, 2.0 - 0.1 * 2.0])
    assert float(out.metrics["ensemble/nonfinite"]) == 1.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="cannot give a variance with var_ddof=1"):
        ensemble_reward(S[:, :1])
    with pytest.raises(ValueError, match=r"scores must be a float \[B, k\] tensor"):
        ensemble_reward(S[0])
    with pytest.raises(ValueError, match="mode must be one of"):
        ensemble_reward(S, "max")
