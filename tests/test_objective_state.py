"""Objective state: checkpoint round trip, refusal of a foreign or outdated state, and the registry
entry's ``state`` declaration that :func:`make_state` reads."""

from __future__ import annotations

import dataclasses

import pytest

from ratiolab.objectives import COMMON, OBJECTIVES
from ratiolab.objectives.ppo import ppo
from ratiolab.objectives.state import ObjectiveState, make_state
from ratiolab.registry import Registry


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


def _declare(monkeypatch: pytest.MonkeyPatch, name: str, **declared: object) -> None:
    """A throwaway objective ``name`` (PPO's function) with the ``declared`` entry fields."""
    scratch = Registry("objective", common=COMMON)
    scratch.add(name, ppo, arxiv="", summary="toy", **declared)  # type: ignore[arg-type]
    monkeypatch.setitem(OBJECTIVES._entries, name, scratch.get(name))


def test_round_trip_and_mismatches(monkeypatch: pytest.MonkeyPatch) -> None:
    _declare(monkeypatch, "toy_dual", state=_Dual)
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


def test_the_entry_declares_the_state_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    stateful = {e.name: e.state for e in OBJECTIVES if e.state is not None}
    assert sorted(stateful) == ["bapo", "r2vpo", "remix", "safe", "safe_fixed"]
    assert all(type(make_state(n)).__name__.lower().startswith(n.split("_")[0]) for n in stateful)
    _declare(monkeypatch, "toy_bad", state=dict)
    with pytest.raises(TypeError, match="'toy_bad': its state factory made a dict, not an ObjectiveState"):
        make_state("toy_bad")
    with pytest.raises(ValueError, match="unknown objective 'toy_missing'"):
        make_state("toy_missing")
