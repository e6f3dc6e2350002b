"""The command line: ``ratiolab list objectives`` prints the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratiolab.cli import main
from ratiolab.objectives import names


@pytest.mark.parametrize("what", ["objectives", "preference", "advantages", "corrections"])
def test_list_prints_every_entry(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    expected = {"objectives": names(), "preference": ["dpo", "p3o", "brain"], "advantages": ["gae", "grpo", "remax"],
                "corrections": ["truncate", "mask"]}
    for name in expected[what]:
        assert name in out
    if what == "objectives":
        assert "2507.18071" in out and "aggregation" in out


def test_list_old_logit_strategies_and_task_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from ratiolab.correction.old_logits import STRATEGIES

    assert main(["list", "old-logits"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in STRATEGIES) and "exact" in out
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "max_value=15" in out and "n_numbers=3" in out and "level=2" in out


def test_unknown_list_target_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["list", "papers"])
    assert "invalid choice" in capsys.readouterr().err


def test_train_gym_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "cp"
    assert main(["train", "--env", "CartPole-v1", "--algo", "ppo", "--steps", "2048", "--run-dir", str(run)]) == 0
    assert "deterministic return" in capsys.readouterr().out and (run / "report.html").is_file()
    assert main(["train", "--env", "CartPole-v1", "--algo", "pqn", "--set", "pqn.lr=-1",
                 "--run-dir", str(tmp_path / "bad")]) == 2
    assert main(["train", "--env", "NoSuchEnv-v0", "--run-dir", str(tmp_path / "bad")]) == 2
    assert "unknown environment id 'NoSuchEnv-v0'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_showcase_prints_the_worked_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["showcase"]) == 0
    out = capsys.readouterr().out
    assert "-0.2513" in out and "-0.2592" in out  # exact old logits vs the recompute fallback (E1)


def test_ope_ranks_checkpoints_of_a_gym_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "cp"
    assert main(["train", "--env", "CartPole-v1", "--steps", "2048", "--run-dir", str(run),
                 "--set", "checkpoint_every=4", "--set", "keep_checkpoints=8",
                 "--set", "ppo.num_envs=4", "--set", "ppo.num_steps=64"]) == 0
    assert main(["ope", str(run), "--episodes", "20", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert "SharpeRatio@2" in out and "gate:" in out and (run / "ope.json").is_file()
    assert main(["ope", str(run), "--estimator", "dm"]) == 2
