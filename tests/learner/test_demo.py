"""``ratiolab demo``: its embedded settings form a valid config and its last line has the promised form."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from ratiolab.learner import TrainConfig, TrainResult
from ratiolab.learner.demo import demo_config, run_demo


def test_demo_config_is_valid_and_samples_pass_at_1() -> None:
    cfg = demo_config()
    cfg.validate()
    assert cfg.eval_samples > 0 and cfg.task.name == "arithmetic"


def test_demo_prints_pass_at_1_and_greedy_and_ends_with_the_summary_line(tmp_path: Path) -> None:
    def fake(cfg: TrainConfig, _resume: bool) -> TrainResult:
        return TrainResult(tmp_path, 0.58, 0.68, cfg.steps, 1.0, tmp_path / "report.html", 0.465, 0.672)

    buf = io.StringIO()
    run_demo(Console(file=buf, width=200), fake)
    lines = buf.getvalue().strip().splitlines()
    assert lines[-1] == "held-out accuracy: base 46% -> trained 67%"
    table = "\n".join(lines)
    assert "46.5%" in table and "67.2%" in table and "58.0%" in table and "68.0%" in table
