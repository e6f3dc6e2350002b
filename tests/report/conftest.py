"""Small real runs for the report tests: two language-model runs (one asynchronous) and a gym run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratiolab.config import override
from ratiolab.gym import GymTrainConfig, PPOConfig
from ratiolab.gym import train as gym_train
from ratiolab.learner import TrainConfig, train

SMALL = [
    "policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=2", "algo.samples_per_prompt=2",
    "algo.minibatches=1", "sampling.max_new_tokens=4", "eval_size=4", "eval_every=1", "steps=3", "threads=1",
    "checkpoint_every=100",
]


@pytest.fixture(scope="session")
def lm_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A synchronous ppo run, and an asynchronous grpo run at max_staleness 1 with a bf16 engine (it logs
    the staleness metrics and a real w_disc)."""
    root = tmp_path_factory.mktemp("lm")
    settings = [
        ["algo.objective=ppo"],
        ["algo.objective=grpo", "async_rl.enabled=true", "async_rl.max_staleness=1", "sampling.engine_dtype=bfloat16"],
    ]
    out = []
    for i, extra in enumerate(settings):
        cfg = override(TrainConfig(), [*SMALL, f"policy.cache_dir={root / 'cache'}", f"run_dir={root / f'run{i}'}",
                                       *extra])
        out.append(train(cfg, log=lambda _: None).run_dir)
    return out


@pytest.fixture(scope="session")
def gym_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PPO on CartPole for 256 environment steps."""
    run = tmp_path_factory.mktemp("gym") / "ppo"
    gym_train(GymTrainConfig(total_steps=256, eval_episodes=1,
                             ppo=PPOConfig(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1)), run)
    return run
