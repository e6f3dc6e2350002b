"""``ratiolab demo``: its embedded settings form a valid config and its last line has the promised form."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from ratiolab.learner import TrainConfig, TrainResult
from ratiolab.learner.demo import demo_config, run_demo
from ratiolab.learner.lm import LMLearner
from ratiolab.policies import build_policy


def test_demo_config_is_valid_and_samples_pass_at_1() -> None:
    cfg = demo_config()
    cfg.validate()
    assert cfg.eval_samples > 0 and cfg.task.name == "arithmetic"


def test_demo_pretraining_stops_at_a_target_and_rl_skips_the_scoring_pass() -> None:
    cfg = demo_config()
    assert cfg.policy.pretrain_stop_pass1 is not None and 0 < cfg.policy.pretrain_stop_pass1 < 0.5  # room for RL
    learner = LMLearner(build_policy(cfg.policy.preset)[0], cfg.algo, cfg.sampling.temperature)
    assert learner.reuse_forward  # one epoch, one minibatch: the training forward gives the old log-probs


def test_demo_prints_pass_at_1_and_greedy_and_ends_with_the_summary_line(tmp_path: Path) -> None:
    def fake(cfg: TrainConfig, _resume: bool) -> TrainResult:
        return TrainResult(tmp_path, 0.58, 0.68, cfg.steps, 1.0, tmp_path / "report.html", 0.465, 0.672)

    buf = io.StringIO()
    run_demo(Console(file=buf, width=200), fake)
    lines = buf.getvalue().strip().splitlines()
    assert lines[-1] == "held-out accuracy: base 46% -> trained 67%"
    table = "\n".join(lines)
    assert "46.5%" in table and "67.2%" in table and "58.0%" in table and "68.0%" in table
