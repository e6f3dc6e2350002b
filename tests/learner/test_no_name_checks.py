"""The learner and the configs read registry declarations (inputs, parts, state, bound old-logit strategy and its
defaults), never method names: no comparison or membership test in ``src/ratiolab/learner`` or
``src/ratiolab/config`` involves a registered objective or advantage name, and none in the learner involves a
learner part's name or an entry's ``parts`` (the parts run as hooks, :mod:`ratiolab.learner.hooks`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ratiolab import advantages, objectives
from ratiolab.learner.hooks import HOOKS

SRC = Path(__file__).resolve().parents[2] / "src" / "ratiolab"


def _named_checks(source: str, names: set[str]) -> list[str]:
    """``line: name`` for each comparison (``==``, ``!=``, ``in``, ``not in``) with a string constant in ``names``
    or with an attribute ``.parts`` (a membership test on an entry's parts)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str) and part.value in names:
                    found.append(f"{node.lineno}: {part.value}")
                if isinstance(part, ast.Attribute) and part.attr == "parts":
                    found.append(f"{node.lineno}: .parts")
    return found


@pytest.mark.parametrize("package", ["learner", "config"])
def test_learner_and_config_compare_no_objective_or_advantage_name(package: str) -> None:
    names = set(objectives.names()) | set(advantages.ADVANTAGES.names())
    files = sorted((SRC / package).rglob("*.py"))
    assert any(f.name == {"learner": "lm.py", "config": "async_rl.py"}[package] for f in files)
    hits = {str(f.relative_to(SRC)): h for f in files if (h := _named_checks(f.read_text(), names))}
    assert not hits, f"name checks in {package}/: {hits}"


def test_the_lm_learner_tests_no_learner_part() -> None:
    """``LMLearner`` runs every part through the hook points: no ``... in entry.parts`` and no part name in a
    comparison (a hook's own module may compare its parameters, e.g. ``clip_bias_norm``)."""
    assert {"critic", "replay", "clip_bias_norm"} <= set(HOOKS)
    assert _named_checks((SRC / "learner" / "lm.py").read_text(), set(HOOKS)) == []


def test_name_check_finder_sees_comparisons() -> None:
    src = 'if a.objective == "remix" or b in ("safe", "x") or "critic" in entry.parts:\n    pass\nprint("grpo")\n'
    assert _named_checks(src, {"remix", "safe", "grpo"}) == ["1: remix", "1: safe", "1: .parts"]
