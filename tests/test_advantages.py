"""Advantage estimators against worked examples (GAE, GRPO family, REINFORCE++, ReMax)."""

from __future__ import annotations

import pytest
import torch

from ratiolab.advantages import ADVANTAGES, compute

R4 = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
G4 = torch.zeros(4, dtype=torch.long)


def test_gae_worked_example() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.6, 0.7]], dtype=torch.float64)
    mask = torch.ones(1, 3, dtype=torch.float64)
    adv = compute("gae", rewards=rewards, values=values, mask=mask, gamma=1.0, lam=0.95)
    assert adv[0].tolist() == pytest.approx([0.46575, 0.385, 0.3], abs=1e-9)
    adv1 = compute("gae", rewards=rewards, values=values, mask=mask, gamma=1.0, lam=1.0)
    assert (adv1 + values)[0].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)


def test_gae_right_padding_takes_zero_value_after_last_token_and_skips_holes() -> None:
    g = torch.Generator().manual_seed(0)
    r = torch.randn(1, 4, generator=g, dtype=torch.float64)
    v = torch.randn(1, 4, generator=g, dtype=torch.float64)
    dense = compute("gae", rewards=r, values=v, mask=torch.ones(1, 4, dtype=torch.float64), gamma=0.9, lam=0.8)
    # pad two garbage positions at the end and an environment token (masked) in the middle
    r_pad = torch.cat([r[:, :2], torch.full((1, 1), 9.0, dtype=torch.float64), r[:, 2:], torch.full((1, 2), 7.0,
                       dtype=torch.float64)], 1)
    v_pad = torch.cat([v[:, :2], torch.full((1, 1), 5.0, dtype=torch.float64), v[:, 2:], torch.full((1, 2), 3.0,
                       dtype=torch.float64)], 1)
    m_pad = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    adv = compute("gae", rewards=r_pad, values=v_pad, mask=m_pad, gamma=0.9, lam=0.8)
    assert adv[0, [0, 1, 3, 4]].tolist() == pytest.approx(dense[0].tolist(), abs=1e-12)
    assert adv[0, [2, 5, 6]].tolist() == [0.0, 0.0, 0.0]


def test_grpo_worked_example_unbiased_and_population() -> None:
    assert compute("grpo", rewards=R4, group_ids=G4).tolist() == pytest.approx(
        [0.499999, -1.499997, 0.499999, 0.499999], abs=1e-6)
    assert compute("grpo", rewards=R4, group_ids=G4, std_ddof=0).tolist() == pytest.approx(
        [0.577349, -1.732047, 0.577349, 0.577349], abs=1e-6)


def test_group_baselines_worked_examples_and_groups_are_independent() -> None:
    assert compute("dr_grpo", rewards=R4, group_ids=G4).tolist() == pytest.approx([0.25, -0.75, 0.25, 0.25])
    assert compute("rloo", rewards=R4, group_ids=G4).tolist() == pytest.approx([1 / 3, -1.0, 1 / 3, 1 / 3])
    rewards = torch.cat([R4, torch.tensor([5.0, 7.0, 3.0], dtype=torch.float64)])
    gids = torch.tensor([4, 4, 4, 4, 9, 9, 2])
    adv = compute("dr_grpo", rewards=rewards, group_ids=gids)
    assert adv.tolist() == pytest.approx([0.25, -0.75, 0.25, 0.25, -1.0, 1.0, 3.0])  # singleton: mean 0 (verl)
    assert compute("grpo", rewards=rewards, group_ids=gids)[-1].item() == pytest.approx(3.0 / (1 + 1e-6))
    assert compute("rloo", rewards=rewards, group_ids=gids)[4:6].tolist() == pytest.approx([-2.0, 2.0])


def test_reinforce_pp_worked_example() -> None:
    scores = torch.tensor([1.0, 0.0], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    kl = torch.tensor([[0.1, 0.2], [0.0, 0.0]], dtype=torch.float64)
    adv = compute("reinforce_pp", scores=scores, mask=mask, kl=kl, beta=0.01)
    assert [adv[0, 0].item(), adv[0, 1].item(), adv[1, 0].item()] == pytest.approx(
        [0.706043, 0.708170, -1.414213], abs=1e-6)
    assert adv[1, 1].item() == 0.0
    unb = compute("reinforce_pp", scores=scores, mask=mask, kl=kl, beta=0.01, ddof=1)
    assert [unb[0, 0].item(), unb[0, 1].item(), unb[1, 0].item()] == pytest.approx(
        [0.576482, 0.578218, -1.154700], abs=1e-6)


def test_reinforce_pp_baseline_subtracts_group_mean_first() -> None:
    scores = torch.tensor([1.0, 3.0, 10.0, 12.0], dtype=torch.float64)
    mask = torch.ones(4, 1, dtype=torch.float64)
    adv = compute("reinforce_pp_baseline", scores=scores, group_ids=torch.tensor([0, 0, 1, 1]), mask=mask)
    # centred scores are [-1, 1, -1, 1]: whitened (population) they stay [-1, 1, -1, 1]
    assert adv[:, 0].tolist() == pytest.approx([-1.0, 1.0, -1.0, 1.0], abs=1e-6)


def test_remax_worked_example() -> None:
    kw = dict(rewards=torch.tensor([2.0], dtype=torch.float64), greedy_rewards=torch.tensor([1.0], dtype=torch.float64),
              mask=torch.ones(1, 3, dtype=torch.float64), kl=torch.tensor([[0.2, -0.1, 0.3]], dtype=torch.float64),
              beta=0.1)
    assert compute("remax", gamma=1.0, **kw)[0].tolist() == pytest.approx([0.98, 1.01, 0.97], abs=1e-12)
    assert compute("remax", gamma=0.95, **kw)[0].tolist() == pytest.approx([0.837375, 0.9125, 0.92], abs=1e-9)
    # the reward difference is clipped to +-5 and padding gets 0
    out = compute("remax", rewards=torch.tensor([20.0]), greedy_rewards=torch.tensor([0.0]),
                  mask=torch.tensor([[1.0, 1.0, 0.0]]), gamma=1.0)
    assert out[0].tolist() == [5.0, 5.0, 0.0]


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'gea'.*gae.*grpo"):
        compute("gea", rewards=R4)
    with pytest.raises(ValueError, match=r"'grpo' requires parameter\(s\) \['group_ids'\]"):
        compute("grpo", rewards=R4)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['gamma'\]"):
        compute("grpo", rewards=R4, group_ids=G4, gamma=1.0)
    assert {"gae", "grpo", "dr_grpo", "rloo", "reinforce_pp", "remax", "gpg", "opo", "grpo_passk", "passk",
            "grpo_batch_std", "maxrl", "gdpo", "optimal_token_baseline", "gigpo"} <= set(ADVANTAGES.names())


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("gae", dict(rewards=torch.zeros(2, 3), values=torch.zeros(2, 2), mask=torch.ones(2, 3)), "values has shape"),
        ("gae", dict(rewards=torch.zeros(1, 2), values=torch.zeros(1, 2), mask=torch.ones(1, 2), gamma=1.5), "gamma"),
        ("grpo", dict(rewards=R4, group_ids=torch.zeros(3, dtype=torch.long)), "group_ids has shape"),
        ("grpo", dict(rewards=R4, group_ids=torch.zeros(4)), "integer tensor"),
        ("grpo", dict(rewards=R4[None], group_ids=G4[None]), r"\[B\] sequence rewards"),
        ("remax", dict(rewards=R4, greedy_rewards=R4, mask=torch.ones(4, 2), reward_clip=0.0), "reward_clip"),
        ("remax", dict(rewards=R4, greedy_rewards=R4[:2], mask=torch.ones(4, 2)), "greedy_rewards has shape"),
        ("reinforce_pp", dict(scores=R4, mask=torch.ones(4)), r"mask must be \[B, T\]"),
        ("reinforce_pp", dict(scores=R4, mask=torch.ones(4, 2), kl=torch.ones(4, 3)), "kl has shape"),
        ("reinforce_pp", dict(scores=R4, mask=torch.ones(4, 2), ddof=2), "ddof must be 0 or 1"),
    ],
)
def test_bad_inputs(name: str, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute(name, **kw)


def test_reinforce_constant_baseline() -> None:
    assert compute("reinforce", rewards=R4).tolist() == [1.0, 0.0, 1.0, 1.0]
    assert compute("reinforce", rewards=R4, baseline=0.5).tolist() == [0.5, -0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match=r"\[B\] sequence rewards"):
        compute("reinforce", rewards=R4[None])
