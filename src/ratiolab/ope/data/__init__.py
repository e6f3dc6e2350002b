"""Logged-feedback data: the schema, a synthetic generator with ground truth, the OBD reader."""

from ratiolab.ope.data.obd import BEHAVIOR_POLICIES, CAMPAIGNS, load_obd
from ratiolab.ope.data.schema import LoggedBanditFeedback
from ratiolab.ope.data.synthetic import (
    SyntheticBanditConfig,
    make_synthetic_feedback,
    policy_value,
    softmax_policy,
)

__all__ = [
    "BEHAVIOR_POLICIES",
    "CAMPAIGNS",
    "LoggedBanditFeedback",
    "SyntheticBanditConfig",
    "load_obd",
    "make_synthetic_feedback",
    "policy_value",
    "softmax_policy",
]
