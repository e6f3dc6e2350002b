"""The preference-loss registry and ``compute``.

A preference loss is a pure function ``fn(batch: PreferenceBatch, **params) -> (loss, metrics)``: a scalar
to minimise, normalised by the batch's global counts (``batch.global_pairs()``, ``batch.global_tokens()``)
so that micro-batch losses sum to the full batch's, and detached 0-d metric tensors (no host sync; reduce a
step's metrics with :func:`ratiolab.objectives.reduce_metrics`).
"""

from __future__ import annotations

from typing import Any

from ratiolab.preference.batch import PreferenceBatch
from ratiolab.registry import Registry
from ratiolab.types import LossOutput

PREFERENCE_LOSSES = Registry("preference loss")


def compute(name: str, batch: PreferenceBatch, *, validate: bool = True, **params: Any) -> LossOutput:
    """Loss of preference loss ``name`` on ``batch``; ``validate`` runs :meth:`PreferenceBatch.check_values`
    (one host sync: pass it for the first micro-batch of an optimiser step only)."""
    p = PREFERENCE_LOSSES.resolve(name, params)
    if validate:
        batch.check_values()
    loss, metrics = PREFERENCE_LOSSES.get(name).fn(batch.upcast(), **p)
    return LossOutput(loss, metrics)
