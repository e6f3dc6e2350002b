"""Policy objectives: pure functions over ``[B, T]`` tensors, one registry.

``compute(name, inputs, **params) -> LossOutput``; ``available()`` lists every objective.
"""

from ratiolab.objectives import cispo, gspo, pg, ppo  # noqa: F401  (registration)
from ratiolab.objectives.aggregation import MODES, aggregate
from ratiolab.objectives.core import COMMON, OBJECTIVES, ObjectiveInfo, available, compute

__all__ = ["COMMON", "MODES", "OBJECTIVES", "ObjectiveInfo", "aggregate", "available", "compute", "get", "names"]


def get(name: str) -> ObjectiveInfo:
    """The registry entry of ``name`` (``ValueError`` listing the valid names if unknown)."""
    e = OBJECTIVES.get(name)
    return ObjectiveInfo(e.name, e.arxiv, e.summary, e.defaults)


def names() -> list[str]:
    return OBJECTIVES.names()
