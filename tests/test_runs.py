"""Run directory: atomic checkpoints, resume bookkeeping, report; typed config parsing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest
import torch

from ratiolab.config import ConfigError, from_dict, load_yaml, override, to_dict
from ratiolab.report import Panel, write_report
from ratiolab.runs import RunDir, rng_state, set_rng_state


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    steps: int = 10
    seeds: tuple[int, ...] = (0,)
    clip: float | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_config_round_trip_and_overrides(tmp_path: Path) -> None:
    cfg = override(Outer(), ["inner.lr=3e-4", "steps=20", "seeds=[1, 2]", "clip=0.2", "inner.mode=b"])
    assert cfg == Outer(steps=20, seeds=(1, 2), clip=0.2, inner=Inner(lr=3e-4, mode="b"))
    assert from_dict(Outer, to_dict(cfg)) == cfg
    (tmp_path / "c.yaml").write_text("steps: 5\ninner:\n  lr: 1\n")
    assert load_yaml(Outer, tmp_path / "c.yaml") == Outer(steps=5, inner=Inner(lr=1.0))


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["stepz=3"], r"unknown key 'stepz'; valid keys here: \['clip', 'inner', 'name', 'seeds', 'steps'\]"),
        (["steps=many"], "steps must be int, got 'many'"),
        (["steps=true"], "steps must be int"),
        (["inner.mode=c"], r"inner.mode = 'c' is not one of \['a', 'b'\]"),
        (["name.x=1"], "name is not a config section"),
        (["steps"], "expected KEY=VALUE"),
    ],
)
def test_config_errors_name_the_field(sets: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        override(Outer(), sets)


def test_unknown_yaml_key_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['inner.eta'\]"):
        from_dict(Outer, {"inner": {"eta": 1}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(Outer, tmp_path / "missing.yaml")


def test_checkpoints_are_atomic_and_resume_truncates_metrics(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run", {"a": 1})
    with pytest.raises(FileExistsError, match="--resume"):
        RunDir.create(tmp_path / "run", {"a": 1})
    w = {"w": torch.arange(4.0)}
    for step in (1, 2, 3):
        run.log({"step": step, "reward": float(step)})
        run.save(step, {"w": w["w"] * step}, {"opt": step, "rng": rng_state()}, keep=2)
    assert sorted(p.name for p in run.ckpt_dir.iterdir()) == ["latest", "step-00000002", "step-00000003"]
    run.log({"step": 4, "reward": 4.0})  # crashed before checkpointing step 4
    again = RunDir.open(tmp_path / "run")
    ckpt = again.latest()
    assert ckpt is not None and ckpt.step == 3 and torch.equal(ckpt.weights["w"], w["w"] * 3)
    again.truncate_metrics(ckpt.step)
    assert [r["step"] for r in again.metrics()] == [1, 2, 3]
    assert again.config() == {"a": 1}
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        RunDir.open(tmp_path)


def test_rng_state_round_trip() -> None:
    s = rng_state()
    a = torch.rand(3)
    set_rng_state(s)
    assert torch.equal(a, torch.rand(3))


def test_report_has_plots_for_logged_keys_only(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", {"task": "t"})
    for step in range(5):
        run.log({"step": step, "reward/mean": step / 4, "clip_frac": 0.1})
    out = write_report(run, [Panel("reward", ("reward/mean",)), Panel("kl", ("kl/k3",))], title="t",
                       summary=[("final reward", "1.0")])
    page = out.read_text()
    assert "plots/00-reward.png" in page
    assert [p.name for p in (run.path / "plots").iterdir()] == ["00-reward.png"]
    assert (run.path / "plots" / "00-reward.png").stat().st_size > 1000
    assert "final reward" in page


def test_checkpoint_steps_and_load_by_step(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run", {"a": 1})
    assert run.checkpoint_steps() == []
    for step in (5, 10, 15, 20):
        run.save(step, {"w": torch.full((2,), float(step))}, {"step": step}, keep=3)
    assert run.checkpoint_steps() == [10, 15, 20]
    ckpt = run.load(15)
    assert ckpt.step == 15 and torch.equal(ckpt.weights["w"], torch.full((2,), 15.0))
    assert ckpt.state == {"step": 15}
    latest = run.latest()
    assert latest is not None and latest.step == 20
    with pytest.raises(ValueError, match=r"step: .* no checkpoint at step 5; kept steps: \[10, 15, 20\]"):
        run.load(5)
