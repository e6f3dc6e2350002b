"""PreferenceBatch validation: one-line errors naming the field, the pair rule, value checks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from pairs import random_batch

from ratiolab.preference import PreferenceBatch, compute


def _two(b: int = 2, t: int = 3) -> dict[str, torch.Tensor]:
    z = torch.zeros(b, t, dtype=torch.float64)
    return {"chosen_logp": z.clone(), "rejected_logp": z.clone(), "chosen_mask": torch.ones(b, t),
            "rejected_mask": torch.ones(b, t)}


def test_sides_may_differ_in_length_but_not_in_rows() -> None:
    f = _two()
    PreferenceBatch(**{**f, "rejected_logp": torch.zeros(2, 5, dtype=torch.float64),
                       "rejected_mask": torch.ones(2, 5)})
    with pytest.raises(ValueError, match="chosen_logp has 2 rows but rejected_logp has 3"):
        PreferenceBatch(**{**f, "rejected_logp": torch.zeros(3, 3, dtype=torch.float64),
                           "rejected_mask": torch.ones(3, 3)})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("chosen_mask", torch.ones(2, 4), r"chosen_mask has shape \(2, 4\) but chosen_logp has \(2, 3\)"),
    ("chosen_ref_logp", torch.zeros(2, 3, dtype=torch.float64), "give both chosen_ref_logp and rejected_ref_logp"),
    ("chosen_logp", torch.zeros(2, 3, 1), "chosen_logp must be a 2-D"),
    ("rejected_logp", None, "rejected_logp must be a torch.Tensor"),
])
def test_bad_fields_name_the_field(field: str, value: torch.Tensor | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreferenceBatch(**{**_two(), field: value})


def test_stored_fields_and_rewards_are_constants_of_the_right_shape() -> None:
    f = _two()
    grad = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"chosen_ref_logp requires grad.*detach\(\)"):
        PreferenceBatch(**f, chosen_ref_logp=grad, rejected_ref_logp=grad.detach())
    with pytest.raises(ValueError, match=r"chosen_reward must be a float \[B\] = \[2\] tensor, got \(2, 1\)"):
        PreferenceBatch(**f, chosen_reward=torch.zeros(2, 1), rejected_reward=torch.zeros(2))


def test_nan_reward_is_an_error_naming_the_field_and_the_count() -> None:
    b = random_batch(0)
    r = b.chosen_reward.clone()
    r[1] = float("nan")
    with pytest.raises(ValueError, match="chosen_reward has 1 non-finite value"):
        compute("p3o", replace(b, chosen_reward=r))
    with pytest.raises(ValueError, match=r"masks must lie in \[0, 1\]"):
        replace(b, chosen_mask=b.chosen_mask * 2).check_values()


def test_bool_mask_is_converted_and_half_precision_is_upcast() -> None:
    f = _two()
    b = PreferenceBatch(**{**f, "chosen_mask": torch.ones(2, 3, dtype=torch.bool),
                           "rejected_logp": f["rejected_logp"].to(torch.bfloat16),
                           "rejected_mask": torch.ones(2, 3, dtype=torch.bool)})
    assert b.chosen_mask.dtype == torch.float64 and b.rejected_mask.dtype == torch.bfloat16
    assert b.upcast().rejected_logp.dtype == torch.float32


def test_split_keeps_the_global_normalisers() -> None:
    b = random_batch(0)
    parts = b.split(4)
    assert sum(p.batch_size for p in parts) == b.batch_size
    assert all(p.num_pairs == b.batch_size and p.num_tokens == float(b.global_tokens()) for p in parts)
    with pytest.raises(ValueError, match="num_micro must be in"):
        b.split(0)


def test_from_groups_pairs_rows_by_prompt_and_orders_by_reward() -> None:
    logp = torch.tensor([[-1.0], [-2.0], [-3.0], [-4.0]], dtype=torch.float64, requires_grad=True)
    rewards = torch.tensor([0.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    seq_ids = torch.tensor([7, 3, 7, 3])
    b = PreferenceBatch.from_groups(logp=logp, mask=torch.ones(4, 1), seq_ids=seq_ids, rewards=rewards,
                                    ref_logp=torch.zeros(4, 1, dtype=torch.float64))
    # group 3: rows 1 (r 1.0) and 3 (r 0.2); group 7: rows 0 (r 0.0) and 2 (r 0.5) -> chosen is row 2
    assert b.chosen_logp.flatten().tolist() == [-2.0, -3.0] and b.rejected_logp.flatten().tolist() == [-4.0, -1.0]
    assert b.chosen_reward.tolist() == [1.0, 0.5] and b.rejected_reward.tolist() == [0.2, 0.0]
    (g,) = torch.autograd.grad(compute("dpo", b).loss, logp)
    assert g[1].item() < 0 < g[3].item() and g[2].item() < 0 < g[0].item()
    given = PreferenceBatch.from_groups(logp=logp, mask=torch.ones(4, 1), seq_ids=seq_ids, order="given")
    assert given.chosen_logp.flatten().tolist() == [-2.0, -1.0]


def test_from_groups_needs_groups_of_two() -> None:
    logp = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="group 0 has 3 row"):
        PreferenceBatch.from_groups(logp=logp, mask=torch.ones(3, 2), seq_ids=torch.zeros(3, dtype=torch.long),
                                    order="given")
    with pytest.raises(ValueError, match="order='reward' needs rewards="):
        PreferenceBatch.from_groups(logp=logp, mask=torch.ones(3, 2), seq_ids=torch.zeros(3, dtype=torch.long))
