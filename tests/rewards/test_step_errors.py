"""SCOPE's first-error localisation (docs/methods/rlhf.md §13)."""

from __future__ import annotations

import pytest
import torch

from ratiolab.rewards.step_errors import first_error_step


def test_worked_example_and_edge_rows() -> None:
    # spec example: scores [0.9, 0.8, 0.3, 0.7], threshold 0.5 -> first error 2 (keep steps 0-1)
    scores = torch.tensor([[0.9, 0.8, 0.3, 0.7], [0.9, 0.9, 0.9, 0.9], [0.1, 0.9, 0.2, 0.9], [0.9, 0.9, 0.9, 0.2]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]])
    assert first_error_step(scores, 0.5, mask).tolist() == [2, -1, 0, -1]  # a padded step is never an error
    assert first_error_step(scores, 0.5).tolist() == [2, -1, 0, 3]


def test_bad_shapes_name_the_field() -> None:
    with pytest.raises(ValueError, match="step_scores must be"):
        first_error_step(torch.zeros(3))
    with pytest.raises(ValueError, match="mask has shape"):
        first_error_step(torch.zeros(2, 3), mask=torch.ones(2, 2))
