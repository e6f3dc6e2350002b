"""Learning thresholds on CartPole-v1: mean return >= 475 over 20 deterministic evaluation episodes."""

from __future__ import annotations

import dataclasses

import pytest

from ratiolab.gym import preset, train


@pytest.mark.slow
@pytest.mark.parametrize(("name", "budget"), [("cartpole-ppo-zoo", 40_960), ("cartpole-pqn", 40_960)])
def test_cartpole_reaches_475(name: str, budget: int) -> None:
    cfg = dataclasses.replace(preset(name), total_steps=budget, eval_every=4, target_return=475.0)
    res = train(cfg, None)
    assert res.reached_target_step is not None, [r.get("eval/return_mean") for r in res.rows]
    assert res.final_eval is not None and res.final_eval.mean >= 475.0
