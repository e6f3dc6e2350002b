"""``ratiolab offline train``: each learner runs and checkpoints; scores; bad datasets; a learning check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ratiolab.cli import main
from ratiolab.config import ConfigError
from ratiolab.offline.collect import CollectConfig, collect
from ratiolab.offline.dataset import read_dataset
from ratiolab.offline.learners import OFFLINE_ALGOS, LearnerConfig
from ratiolab.offline.train import OfflineTrainConfig, normalised_score, train
from ratiolab.runs import RunDir


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "pend"
    return collect(CollectConfig(env_id="Pendulum-v1", steps=400, ref_episodes=1), out, log=lambda _: None)


def test_normalised_score() -> None:
    assert normalised_score(-600.0, {"random": -1200.0, "expert": -200.0}) == 60.0
    assert normalised_score(-600.0, {"random": -1200.0}) is None


@pytest.mark.parametrize("algo", sorted(OFFLINE_ALGOS))
def test_each_learner_trains_and_checkpoints(tmp_path: Path, pendulum: Path, algo: str) -> None:
    cfg = OfflineTrainConfig(algo=algo, data=str(pendulum), steps=6, batch_size=32, eval_every=3, eval_episodes=1,
                             learner=LearnerConfig(hidden=[16]))
    res = train(cfg, tmp_path / "run")
    assert len(res.rows) == 2 and np.isfinite(res.rows[-1]["loss/critic"]) and res.score is None
    run = RunDir.open(tmp_path / "run")
    ckpt = run.latest()
    assert ckpt is not None and ckpt.step == 6 and any(k.startswith("actor.") for k in ckpt.weights)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6]


def test_discrete_dataset_is_refused(tmp_path: Path) -> None:
    out = collect(CollectConfig(env_id="CartPole-v1", steps=50, ref_episodes=1), tmp_path / "cp", log=lambda _: None)
    with pytest.raises(ConfigError, match=r"cp: env 'CartPole-v1' has action space Discrete\(2\)"):
        train(OfflineTrainConfig(data=str(out), steps=1), None)


def test_cli_offline_train(tmp_path: Path, pendulum: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["offline", "train", "--algo", "td3bc", "--data", str(pendulum), "--steps", "4", "--batch-size", "16",
            "--hidden", "8", "--eval-episodes", "1", "--run-dir", str(tmp_path / "run")]
    assert main(args) == 0
    assert "step 4: eval return" in capsys.readouterr().out
    assert main([*args[:5], str(tmp_path / "none"), *args[6:-1], str(tmp_path / "run2")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["offline", "train", "--algo", "cql", "--data", str(pendulum)]) == 2
    assert "--algo 'cql' is not one of" in capsys.readouterr().err


@pytest.mark.slow
def test_td3bc_beats_a_pendulum_medium_dataset(tmp_path: Path) -> None:
    """A medium dataset from a 10k-step gym run (about 80 s on a shared 2-core CPU); TD3+BC beats its mean return."""
    out = collect(CollectConfig(env_id="Pendulum-v1", policy="medium", steps=5000, train_steps=10_000, ref_episodes=5),
                  tmp_path / "medium", log=lambda _: None)
    data = read_dataset(out)
    cfg = OfflineTrainConfig(algo="td3bc", data=str(out), steps=6000, eval_every=0, eval_episodes=10,
                             learner=LearnerConfig(hidden=[64, 64]))
    res = train(cfg, None)
    assert np.mean(res.returns) > data.episode_returns().mean() + 50
