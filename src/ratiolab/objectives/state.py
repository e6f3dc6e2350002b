"""Explicit state for stateful objectives (adaptive bounds, dual variables, PID controllers, EWMA).

A stateful objective declares a keyword-only ``state`` parameter and its registry entry the state's
factory (``OBJECTIVES.register(..., state=factory)``, called with the objective's parameters); the
learner creates the state once with :func:`make_state`, passes it to every ``compute`` call, calls
``state.observe(micro_batch)`` for every micro-batch before the loss pass of an optimiser step
when the state overrides ``observe``, calls ``state.update(metrics)`` once per optimiser step
with that step's metrics, and checkpoints
``state.state_dict()``. ``load_state_dict`` refuses a state saved by another method or by
another version of the same method instead of silently starting fresh.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ratiolab.objectives.core import OBJECTIVES
from ratiolab.types import PolicyLossInputs


@dataclasses.dataclass
class ObjectiveState:
    """Base class: subclasses are dataclasses whose fields are the persistent state.

    ``METHOD`` names the objective and ``VERSION`` the layout of the state; both are written
    into ``state_dict`` and checked by ``load_state_dict``.
    """

    METHOD: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def observe(self, inputs: PolicyLossInputs) -> None:
        """See every micro-batch of an optimiser step before its loss pass (default: nothing).

        A state that overrides this (e.g. BAPO's batch-level bounds) gets one no-grad pass
        over the step's micro-batches from the learner before the backward passes.
        """

    def update(self, metrics: dict[str, float]) -> None:
        """Advance the state after one optimiser step (default: nothing to do)."""

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.METHOD, "version": self.VERSION, "fields": dataclasses.asdict(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        method, version = state.get("method"), state.get("version")
        if method != self.METHOD:
            raise ValueError(
                f"objective state was saved by {method!r}, not {self.METHOD!r}: resume with the same "
                "--objective or start a fresh run"
            )
        if version != self.VERSION:
            raise ValueError(
                f"objective state of {self.METHOD!r} has layout version {version}, this ratiolab expects "
                f"{self.VERSION}: start a fresh run or use the ratiolab version that wrote it"
            )
        names = {f.name for f in dataclasses.fields(self)}
        fields = state.get("fields", {})
        if set(fields) != names:
            raise ValueError(
                f"objective state of {self.METHOD!r} has fields {sorted(fields)}, expected {sorted(names)}"
            )
        for k, v in fields.items():
            setattr(self, k, v)


def observes(state: ObjectiveState | None) -> bool:
    """Whether ``state`` overrides :meth:`ObjectiveState.observe` (and so needs the extra pass)."""
    return state is not None and type(state).observe is not ObjectiveState.observe


def make_state(name: str, **params: Any) -> ObjectiveState | None:
    """A fresh state for objective ``name`` from its entry's ``state`` factory (``None``: stateless)."""
    factory = OBJECTIVES.get(name).state
    if factory is None:
        return None
    state = factory(**params)
    if not isinstance(state, ObjectiveState):
        raise TypeError(f"objective {name!r}: its state factory made a {type(state).__name__}, not an ObjectiveState")
    return state
