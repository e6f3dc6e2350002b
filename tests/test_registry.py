"""The registry helper: presets, duplicates and parameter errors."""

from __future__ import annotations

import pytest

from ratiolab.registry import Registry


def f(x: int, *, a: float = 1.0, b: str) -> tuple[int, float, str]:
    return x, a, b


def test_preset_and_resolution() -> None:
    reg = Registry("thing", common={"c": 0})
    reg.add("f", f, arxiv="", summary="s")
    reg.add("g", f, arxiv="", summary="preset", fixed={"a": 2.0, "c": 1})
    assert reg.resolve("g", {"b": "x"}) == {"c": 1, "a": 2.0, "b": "x"}
    assert reg.resolve("g", {"b": "x", "a": 3.0})["a"] == 3.0
    assert "b" not in reg.get("f").defaults and "f" in reg and reg.names() == ["f", "g"]
    with pytest.raises(ValueError, match=r"requires parameter\(s\) \['b'\]"):
        reg.resolve("f", {})
    with pytest.raises(ValueError, match="already registered"):
        reg.add("f", f, arxiv="", summary="s")
    with pytest.raises(ValueError, match=r"fixes unknown parameters \['z'\]"):
        reg.add("h", f, arxiv="", summary="s", fixed={"z": 1})
