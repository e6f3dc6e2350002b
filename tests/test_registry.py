"""The registry helper: presets, duplicates and parameter errors."""

from __future__ import annotations

import pytest

from ratiolab import advantages, objectives
from ratiolab.registry import REQUIRED, Registry


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


def test_declared_inputs_must_be_keyword_arguments() -> None:
    reg = Registry("thing")

    def fn(*, rewards: float, scale: float = 1.0) -> float:
        return rewards * scale

    reg.add("ok", fn, arxiv="", summary="", inputs=("rewards",), parts=("critic",), binds_old_logits="ewma")
    e = reg.get("ok")
    assert (e.inputs, e.parts, e.binds_old_logits) == (("rewards",), ("critic",), "ewma")
    with pytest.raises(ValueError, match=r"declares inputs \['scores'\]"):
        reg.add("bad", fn, arxiv="", summary="", inputs=("scores",))


def test_registered_methods_declare_what_the_learner_feeds_them() -> None:
    adv = {e.name: e.inputs for e in advantages.ADVANTAGES}
    assert adv["remax"] == ("rewards", "greedy_rewards", "mask", "kl", "beta")
    assert adv["optimal_token_baseline"] == ("rewards", "group_ids", "mask", "prox_logp", "sum_pi_sq", "is_weights")
    obj = {e.name: e for e in objectives.OBJECTIVES}
    assert obj["gbpo"].inputs == ("scores",) and obj["mdpo"].inputs == ("kl", "iteration")
    assert obj["remix"].parts == ("replay",) and obj["safe_fixed"].parts == ("critic",)
    assert {n for n, e in obj.items() if "clip_bias_norm" in e.parts} == {"s_ppo", "st_ppo"}


def test_entries_declare_state_batch_params_reward_components_and_old_logit_defaults() -> None:
    """What the learner and the configs read instead of method names (the state factories: test_objective_state)."""
    obj = {e.name: e for e in objectives.OBJECTIVES}
    assert {n for n, e in obj.items() if e.batch_params is not None} == {"m2po"}
    assert {e.name for e in advantages.ADVANTAGES if e.reward_components} == {"gdpo"}
    declared = {n: dict(e.old_logit_defaults) for n, e in obj.items() if e.old_logit_defaults}
    assert declared == {"ppo_ewma_original": {"beta": REQUIRED, "reset_tau": 0.0}}
