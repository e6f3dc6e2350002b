"""Ratio algebra: the two-factor decomposition and discrepancy corrections.

``decompose(inputs) -> (w_disc, r_stale)``; ``apply(kind, w_disc, mask, **params) -> Corrected``.
"""

from ratiolab.correction.discrepancy import CORRECTIONS, Corrected, apply
from ratiolab.correction.ratio import LOG_RATIO_BOUND, clamp_bites, decompose, discrepancy_weight, log_ratio

__all__ = [
    "CORRECTIONS", "LOG_RATIO_BOUND", "Corrected", "apply", "clamp_bites", "decompose", "discrepancy_weight",
    "log_ratio",
]
