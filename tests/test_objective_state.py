"""Objective state: checkpoint round trip and refusal of a foreign or outdated state."""

from __future__ import annotations

import dataclasses

import pytest

from ratiolab.objectives.state import ObjectiveState, make_state, register_state


@dataclasses.dataclass
class _Dual(ObjectiveState):
    METHOD = "toy_dual"
    lam: float = 0.0

    def update(self, metrics: dict[str, float]) -> None:
        self.lam = max(0.0, self.lam + metrics["violation"])


@dataclasses.dataclass
class _Other(ObjectiveState):
    METHOD = "toy_other"
    lam: float = 0.0


def test_round_trip_and_mismatches() -> None:
    register_state("toy_dual")(_Dual)
    s = make_state("toy_dual", lam=0.5)
    assert isinstance(s, _Dual)
    s.update({"violation": 0.25})
    fresh = _Dual()
    fresh.load_state_dict(s.state_dict())
    assert fresh.lam == 0.75
    with pytest.raises(ValueError, match="saved by 'toy_dual', not 'toy_other'"):
        _Other().load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="layout version 0"):
        fresh.load_state_dict({**s.state_dict(), "version": 0})
    with pytest.raises(ValueError, match="has fields"):
        fresh.load_state_dict({**s.state_dict(), "fields": {"mu": 1.0}})
    assert make_state("ppo") is None
