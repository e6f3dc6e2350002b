"""PPO-C reward calibration against docs/methods/rlhf.md §4."""

from __future__ import annotations

import pytest
import torch

from ratiolab.rewards.calibration import CalibrationConfig, calibrate_rewards, parse_confidence, strip_confidence

R = torch.tensor([3.0, -1.0], dtype=torch.float64)


def test_parse_and_strip_confidence() -> None:
    assert [parse_confidence(s) for s in ("... Confidence: 9", "confidence:2", "CONFIDENCE: 12.5", "none")] == [
        0.9, 0.2, 1.0, 0.5]
    assert strip_confidence("The answer is 4. Confidence: 8") == "The answer is 4."


def test_worked_example_difference_and_threshold() -> None:
    s = torch.tensor([parse_confidence("Confidence: 9"), parse_confidence("Confidence: 2")], dtype=torch.float64)
    out, avg = calibrate_rewards(R, s, 0.0, CalibrationConfig())
    assert avg == pytest.approx(0.1)
    assert out.tolist() == pytest.approx([5.32, -0.34], abs=1e-12)
    out, avg = calibrate_rewards(R, s, 0.0, CalibrationConfig.class_defaults())
    assert out.tolist() == pytest.approx([3.6, -0.85], abs=1e-12)


def test_neutral_confidence_changes_nothing_and_rewards_are_clamped() -> None:
    half = torch.full((2,), 0.5, dtype=torch.float64)
    out, _ = calibrate_rewards(torch.tensor([30.0, -1.0], dtype=torch.float64), half, 0.0, CalibrationConfig())
    assert out.tolist() == [10.0, -1.0]


def test_running_average_is_explicit_state() -> None:
    s = torch.full((2,), 0.9, dtype=torch.float64)
    _, a1 = calibrate_rewards(R, s, 0.0, CalibrationConfig())
    _, a2 = calibrate_rewards(R, s, a1, CalibrationConfig())
    assert a2 == pytest.approx(0.1 * 1.0 + 0.9 * a1)


def test_bad_config_and_inputs() -> None:
    with pytest.raises(ValueError, match=r"CalibrationConfig\.adjustment must be one of"):
        CalibrationConfig(adjustment="ratio")
    with pytest.raises(ValueError, match="confidence must lie in"):
        calibrate_rewards(R, torch.tensor([9.0, 2.0], dtype=torch.float64), 0.0, CalibrationConfig())
    with pytest.raises(ValueError, match="rewards has 1 non-finite"):
        calibrate_rewards(torch.tensor([float("nan"), 1.0]), torch.tensor([0.5, 0.5]), 0.0, CalibrationConfig())


def test_std_average_threshold_signs_follow_r() -> None:
    # avg_type="std": r_avg from the (unbiased [inferred]) batch std, adj = w r (s - 0.5) without |.|
    s = torch.tensor([0.9, 0.2], dtype=torch.float64)
    cfg = CalibrationConfig(weight=0.5, adjustment="threshold", avg_type="std")
    out, avg = calibrate_rewards(R, s, 0.0, cfg)
    assert avg == pytest.approx(0.1 * 8**0.5)
    assert out.tolist() == pytest.approx([3.6, -1.15], abs=1e-12)
    with pytest.raises(ValueError, match="needs a batch of >= 2 rewards"):
        calibrate_rewards(R[:1], s[:1], 0.0, cfg)
