"""PPO-C: calibrated reward calculation from a verbalised confidence (arXiv 2410.09724; docs/methods/rlhf.md §4).

Per rollout batch, with ``s`` the stated confidence in [0, 1] (``Confidence: X`` parsed, clamped to [0, 10],
divided by 10; 0.5 when absent) and ``r`` the original RM's score of the response with the confidence text
stripped, clamped to ``[-reward_clip, reward_clip]``:

    r_avg <- alpha * mean_batch(r) + (1 - alpha) * r_avg            (before adjusting; ``avg_type="std"``: std)
    difference:  r_hat = r + w (r - r_avg)(s - 0.5)
    threshold:   adj = w |r| (s - 0.5)   (w r (s - 0.5) with std);  r_hat = r + adj if r >= r_avg else r - adj

``r_hat`` then enters standard PPO (token KL shaping, score at EOS, GAE). The running average is explicit
state: passed in and returned. [verified: code] SeanLeng1/Reward-Calibration
``calibrated_experience_maker.py``; the batch std's ddof under ``avg_type="std"`` is [inferred] (unbiased).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ratiolab.rewards.checks import finite, vector

ADJUSTMENTS = ("difference", "threshold")
AVG_TYPES = ("mean", "std")
_CONFIDENCE = re.compile(r"confidence:\s*([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class CalibrationConfig:
    """PPO-C settings; the defaults are the released Llama-3-8B / Mistral-7B scripts (``difference``, w 2.0).
    The code's argument defaults are :meth:`class_defaults` (``threshold``, w 0.5). ``init_reward_avg`` starts
    the running average: 0 when the rewards are normalised, the RM's raw mean for the faithful mode."""

    alpha: float = 0.1
    weight: float = 2.0
    adjustment: str = "difference"
    avg_type: str = "mean"
    reward_clip: float = 10.0
    init_reward_avg: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"CalibrationConfig.alpha must be in (0, 1], got {self.alpha}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"CalibrationConfig.weight must be a finite number >= 0, got {self.weight}")
        if self.adjustment not in ADJUSTMENTS:
            raise ValueError(f"CalibrationConfig.adjustment must be one of {ADJUSTMENTS}, got {self.adjustment!r}")
        if self.avg_type not in AVG_TYPES:
            raise ValueError(f"CalibrationConfig.avg_type must be one of {AVG_TYPES}, got {self.avg_type!r}")
        if not self.reward_clip > 0:
            raise ValueError(f"CalibrationConfig.reward_clip must be > 0, got {self.reward_clip}")
        if not math.isfinite(self.init_reward_avg):
            raise ValueError(f"CalibrationConfig.init_reward_avg must be finite, got {self.init_reward_avg}")

    @classmethod
    def class_defaults(cls) -> CalibrationConfig:
        return cls(weight=0.5, adjustment="threshold")


def parse_confidence(text: str) -> float:
    """The stated confidence of ``text`` in [0, 1]: the first ``Confidence: X`` (any case), clamped to [0, 10]
    and divided by 10; 0.5 (no adjustment) when there is none."""
    m = _CONFIDENCE.search(text)
    return 0.5 if m is None else min(max(float(m.group(1)), 0.0), 10.0) / 10.0


def strip_confidence(text: str) -> str:
    """``text`` without its ``Confidence: X`` statements (what the original RM scores; re-append EOS)."""
    return _CONFIDENCE.sub("", text).rstrip()


def calibrate_rewards(
    rewards: torch.Tensor, confidence: torch.Tensor, reward_avg: float, cfg: CalibrationConfig,
) -> tuple[torch.Tensor, float]:
    """``(r_hat, new_reward_avg)`` of ``[B]`` RM scores and ``[B]`` confidences in [0, 1] (module docstring);
    ``reward_avg`` is the running average before this batch (``cfg.init_reward_avg`` at the start)."""
    vector("calibrate_rewards", "rewards", rewards)
    vector("calibrate_rewards", "confidence", confidence, rewards.numel())
    finite("calibrate_rewards", "rewards", rewards)
    if bool(((confidence < 0) | (confidence > 1)).any()):
        raise ValueError("calibrate_rewards: confidence must lie in [0, 1] (parse_confidence gives that)")
    if cfg.avg_type == "std" and rewards.numel() < 2:
        raise ValueError("calibrate_rewards: avg_type='std' needs a batch of >= 2 rewards")
    r = rewards.clamp(-cfg.reward_clip, cfg.reward_clip)
    stat = r.mean() if cfg.avg_type == "mean" else r.std()
    avg = cfg.alpha * float(stat) + (1.0 - cfg.alpha) * reward_avg
    s = confidence - 0.5
    if cfg.adjustment == "difference":
        return r + cfg.weight * (r - avg) * s, avg
    adj = cfg.weight * (r if cfg.avg_type == "std" else r.abs()) * s
    return torch.where(r >= avg, r + adj, r - adj), avg
