"""PF-PPO filters and the R^2 selection rule against docs/methods/rlhf.md §5; the self-rewarding reward (§6)."""

from __future__ import annotations

import pytest
import torch

from ratiolab.rewards.filtration import filter_responses, r_squared, select_filter
from ratiolab.rewards.self_rewarding import log_ratio_reward

R = torch.tensor([0.2, 0.9, 0.5, 0.1, 0.7], dtype=torch.float64)
ONE = torch.zeros(5, dtype=torch.long)


def _kept(keep: torch.Tensor) -> set[int]:
    return set(keep.nonzero().squeeze(-1).tolist())


def test_worked_example_filters() -> None:
    assert _kept(filter_responses(R, ONE, "bon")) == {1}
    assert _kept(filter_responses(R, ONE, "bw")) == {1, 3}
    seen = set()
    for seed in range(40):
        kept = _kept(filter_responses(R, ONE, "br", generator=torch.Generator().manual_seed(seed)))
        assert len(kept) == 2 and 1 in kept
        seen |= kept - {1}
    assert seen == {0, 2, 3, 4}


def test_filters_work_per_prompt_group() -> None:
    r = torch.tensor([0.1, 0.5, 0.3, 2.0, -1.0, 0.0], dtype=torch.float64)
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    assert _kept(filter_responses(r, g, "bon")) == {1, 3}
    assert _kept(filter_responses(r, g, "bw")) == {0, 1, 3, 4}
    assert _kept(filter_responses(r[:1], g[:1], "br")) == {0}


def test_r_squared_worked_example_and_selection() -> None:
    x = torch.tensor([0.1, 0.4, 0.8, 0.9], dtype=torch.float64)
    y = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    assert r_squared(x, y) == pytest.approx(0.8780488, abs=1e-7)
    assert r_squared(x, 3 * x - 1) == pytest.approx(1.0)
    # two prompts: the best-worst pairs line up with the scores, the others do not
    rewards = torch.tensor([0.9, 0.5, 0.1, 0.8, 0.6, 0.2], dtype=torch.float64)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    best, r2 = select_filter(rewards, scores, groups, ("bw", "br"), generator=torch.Generator().manual_seed(0))
    assert best == "bw" and r2["bw"] == pytest.approx(r_squared(rewards[[0, 2, 3, 5]], scores[[0, 2, 3, 5]]))


def test_bad_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="rewards has 1 non-finite"):
        filter_responses(torch.tensor([0.1, float("nan")]), torch.zeros(2, dtype=torch.long), "bon")
    with pytest.raises(ValueError, match="group_ids must be an integer"):
        filter_responses(R, torch.zeros(5), "bon")
    with pytest.raises(ValueError, match="SS_tot = 0"):
        r_squared(R, torch.ones(5, dtype=torch.float64))


def test_self_rewarding_log_ratio_reward() -> None:
    sft = torch.tensor([[-0.5, -1.0, -0.2, float("nan")]], dtype=torch.float64)
    pt = torch.tensor([[-1.0, -1.5, -1.2, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    assert log_ratio_reward(sft, pt, mask).tolist() == pytest.approx([2.0], abs=1e-12)
    with pytest.raises(ValueError, match="non-finite"):
        log_ratio_reward(sft, pt, torch.ones_like(mask))
    with pytest.raises(ValueError, match="pt_logp has shape"):
        log_ratio_reward(sft, pt[:, :3], mask)
