"""Parameter checks shared by objectives: errors name the method and the valid range."""

from __future__ import annotations


def check_clip(method: str, clip_low: float, clip_high: float, *, max_low: float = 1.0) -> None:
    """Clip widths: ratio clipped to ``[1 - clip_low, 1 + clip_high]``, ``0 <= clip_low <= max_low``."""
    if not 0.0 <= clip_low <= max_low:
        raise ValueError(f"{method}: clip_low must be in [0, {max_low}], got {clip_low}")
    if clip_high < 0.0:
        raise ValueError(f"{method}: clip_high must be >= 0, got {clip_high}")
