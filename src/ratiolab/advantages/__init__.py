"""Advantage estimators, registered by name: ``compute(name, **tensors_and_params)``."""

from ratiolab.advantages import episodic, gae, group, reinforce  # noqa: F401  (registration)
from ratiolab.advantages.core import ADVANTAGES, compute

__all__ = ["ADVANTAGES", "compute"]
