"""TrainConfig checks that run before any work: evaluation sampling and preset old-logit bindings."""

from __future__ import annotations

import pytest

from ratiolab.config import ConfigError, override
from ratiolab.learner import TrainConfig


def test_negative_eval_samples_is_rejected() -> None:
    with pytest.raises(ConfigError, match="eval_samples"):
        override(TrainConfig(), ["eval_samples=-1"]).validate()


def test_presets_bind_their_old_logit_strategy() -> None:
    cfg = override(TrainConfig(), ["algo.objective=ppo_ewma", "async_rl.enabled=true"])
    cfg.validate()
    assert cfg.async_rl.strategy("ppo_ewma") == "ewma" and cfg.async_rl.strategy("ppo") == "snapshot"
    with pytest.raises(ConfigError, match=r"binds async_rl\.old_logits=.ewma."):
        override(cfg, ["async_rl.old_logits=snapshot"]).validate()
    with pytest.raises(ConfigError, match=r"async_rl\.enabled=true"):
        override(TrainConfig(), ["algo.objective=ppo_ewma_original"]).validate()
    with pytest.raises(ConfigError, match=r"'ppo_ewma_original' has no default async_rl\.ewma_beta .the ewma "
                                         r"strategy's beta.: set async_rl\.ewma_beta"):
        override(TrainConfig(), ["algo.objective=ppo_ewma_original", "async_rl.enabled=true"]).validate()


def test_ewma_parameters_per_objective() -> None:
    revised = override(TrainConfig(), ["algo.objective=ppo_ewma", "async_rl.enabled=true"]).async_rl
    assert revised.strategy_params("ppo_ewma") == {"beta": None, "reset_tau": 0.9}
    original = override(TrainConfig(), ["algo.objective=ppo_ewma_original", "async_rl.enabled=true",
                                        "async_rl.ewma_beta=0.5"])
    original.validate()
    assert original.async_rl.strategy_params("ppo_ewma_original") == {"beta": 0.5, "reset_tau": 0.0}  # no reset
    assert original.async_rl.strategy_params("ppo") == {}  # ppo runs with snapshot
    for bad in ("async_rl.ewma_beta=1.0", "async_rl.ewma_reset_tau=1.5"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", r"\.")):
            override(TrainConfig(), [bad]).validate()


@pytest.mark.parametrize("strategy", ["auto", "recompute", "behavior", "snapshot", "ewma", "loglinear", "linear_prox"])
def test_decoupled_ppo_runs_with_any_old_logit_strategy(strategy: str) -> None:
    cfg = override(TrainConfig(), ["algo.objective=decoupled_ppo", "async_rl.enabled=true",
                                   f"async_rl.old_logits={strategy}"])
    cfg.validate()
    assert cfg.async_rl.strategy("decoupled_ppo") == ("snapshot" if strategy == "auto" else strategy)
    override(TrainConfig(), ["algo.objective=decoupled_ppo"]).validate()  # synchronous: prox = batch-start policy


@pytest.mark.parametrize(("sets", "message"), [
    (["algo.kl_placement=loss", "algo.kl_coef=-0.1"], r"algo\.kl_coef = -0\.1 must be >= 0"),
    (["algo.entropy_coef=-0.01"], r"algo\.entropy_coef = -0\.01 must be >= 0"),
    (["algo.weight_decay=-1"], r"algo\.weight_decay = -1\.0 must be >= 0"),
    (["algo.advantage_params={eps: -1.0e-6}"], r"algo\.advantage_params\.eps = -1e-06 must be >= 0"),
    (["sampling.temperature=0"], r"sampling\.temperature = 0\.0 must be > 0"),
    (["sampling.top_p=0"], r"sampling\.top_p = 0\.0 must be in \(0, 1\]"),
    (["sampling.top_p=1.5"], r"sampling\.top_p = 1\.5 must be in \(0, 1\]"),
    (["sampling.top_k=-1"], r"sampling\.top_k = -1 must be >= 0"),
    (["async_rl.max_staleness=4"], r"async_rl\.max_staleness set without async_rl\.enabled=true"),
    (["async_rl.backend=process", "async_rl.partial_rollouts=false"],
     r"async_rl\.partial_rollouts, async_rl\.backend set without async_rl\.enabled=true"),
])
def test_settings_that_make_no_sense_are_rejected_naming_the_field(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        override(TrainConfig(), sets).validate()
    if sets[0].startswith("async_rl."):
        override(TrainConfig(), [*sets, "async_rl.enabled=true"]).validate()  # fine once asynchronous


@pytest.mark.parametrize("task", ["arithmetic", "countdown", "guess"])
def test_every_task_runs_on_its_own_default_parameters(task: str) -> None:
    cfg = override(TrainConfig(), [f"task.name={task}"])
    cfg.validate()
    assert cfg.task.params == {}
