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
        override(TrainConfig(), ["algo.objective=decoupled_ppo"]).validate()
