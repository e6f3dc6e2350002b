"""``ratiolab data collect``: policy kinds, behaviour log-probs, checkpoint choice, the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from ratiolab.cli import main
from ratiolab.gym import GymTrainConfig, PPOConfig, train
from ratiolab.offline.collect import CollectConfig, collect, noisy_behaviour, pick_checkpoints
from ratiolab.offline.dataset import read_dataset


def test_pick_checkpoints_expert_is_best_and_medium_is_nearest_half() -> None:
    returns = {1: -1200.0, 2: -900.0, 3: -700.0, 4: -300.0, 5: -400.0, 6: -150.0, 7: -160.0}
    # random -1200, expert step 6 at -150: half way is -675 -> step 3 (-700)
    assert pick_checkpoints(returns, -1200.0, 0.5) == (6, 3)
    assert pick_checkpoints(returns, -1200.0, 0.9) == (6, 4)


class _Fixed:
    """An algorithm stand-in whose deterministic action is fixed."""

    def __init__(self, action: np.ndarray) -> None:
        self.action = action
        self.runner = type("R", (), {"obs_norm": staticmethod(lambda o: o.astype(np.float32))})()

    def act(self, obs: torch.Tensor) -> np.ndarray:
        return np.repeat(self.action[None], len(obs), 0)


def test_truncated_gaussian_logp_by_hand() -> None:
    box = spaces.Box(-2.0, 2.0, (1,))
    # mean at the upper bound 2, std 0.1 * 2 = 0.2: half the normal mass is inside, density = 2 * N(a; 2, 0.2)
    b = noisy_behaviour(_Fixed(np.array([3.0])), box, 0.1, 0.0, np.random.default_rng(0))  # type: ignore[arg-type]
    a, logp = b(np.zeros((4, 3)))
    assert (a <= 2.0).all() and (a >= -2.0).all()
    by_hand = np.log(2.0) - 0.5 * ((a[:, 0] - 2.0) / 0.2) ** 2 - np.log(0.2 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(logp, by_hand, rtol=1e-6)


def test_epsilon_greedy_logp_by_hand() -> None:
    b = noisy_behaviour(_Fixed(np.array(1)), spaces.Discrete(4), 0.0, 0.2,  # type: ignore[arg-type]
                        np.random.default_rng(0))
    a, logp = b(np.zeros((200, 2)))
    np.testing.assert_allclose(logp[a == 1], np.log(0.8 + 0.05))
    np.testing.assert_allclose(logp[a != 1], np.log(0.05))
    assert 0.1 < (a != 1).mean() < 0.25


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_random_dataset(tmp_path: Path, env_id: str) -> None:
    out = collect(CollectConfig(env_id=env_id, steps=300, ref_episodes=2), tmp_path / "ds", log=lambda _: None)
    d = read_dataset(out)
    assert len(d) == 300 and d.meta.policy == "random" and "random" in d.meta.ref_returns
    assert d.truncations[-1] and d.meta.discrete == (env_id == "CartPole-v1")
    if env_id == "Pendulum-v1":  # uniform on [-2, 2]
        np.testing.assert_allclose(d.behav_logp, -np.log(4.0), rtol=1e-6)
        assert d.truncations.sum() == 2 and not d.terminals.any()  # 200-step time limit, then the segment end
    # next_observations continue observations within an episode
    same = d.episode_ids[1:] == d.episode_ids[:-1]
    np.testing.assert_array_equal(d.observations[1:][same], d.next_observations[:-1][same])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PPO run on Pendulum with four checkpoints."""
    run = tmp_path_factory.mktemp("src") / "run"
    ppo = dataclasses.replace(PPOConfig(), num_envs=1, num_steps=64, num_minibatches=1, update_epochs=1)
    cfg = GymTrainConfig(env_id="Pendulum-v1", algo="ppo", total_steps=256, ppo=ppo, checkpoint_every=1,
                         keep_checkpoints=10, eval_episodes=1)
    train(cfg, run)
    return run


def test_expert_medium_and_replay_from_a_source_run(tmp_path: Path, source: Path) -> None:
    base = CollectConfig(env_id="Pendulum-v1", steps=240, source=str(source), ref_episodes=2)
    expert = read_dataset(collect(dataclasses.replace(base, policy="expert"), tmp_path / "e", log=lambda _: None))
    assert set(expert.meta.ref_returns) == {"random", "expert"} and expert.meta.source == str(source)
    assert np.isfinite(expert.behav_logp).all()
    replay = read_dataset(collect(dataclasses.replace(base, policy="medium-replay"), tmp_path / "r",
                                  log=lambda _: None))
    segments = replay.meta.extra["segments"]
    assert segments[0][0] == "random" and sum(n for _, n in segments) == 240 and len(replay) == 240


def test_cli_collect_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    assert main(["data", "collect", "--env", "CartPole-v1", "--steps", "50", "--out", str(out)]) == 0
    assert "wrote 50 transitions" in capsys.readouterr().out
    assert main(["data", "collect", "--env", "CartPole-v1", "--steps", "50", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["data", "collect", "--steps", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--steps = 0 must be in [1, inf)" in capsys.readouterr().err
