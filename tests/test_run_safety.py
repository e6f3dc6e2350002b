"""Run safety: no code runs from a checkpoint, damaged checkpoints are detected and skipped, resume
keeps the stored config, a run without a checkpoint starts over, a resumed finished run reports right."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ratiolab.cli import main
from ratiolab.config import ConfigError, override, to_dict
from ratiolab.config.async_rl import AsyncConfig
from ratiolab.gym import GymTrainConfig, PQNConfig
from ratiolab.gym import train as gym_train
from ratiolab.learner import TrainConfig
from ratiolab.learner import train as lm_train
from ratiolab.objectives import OBJECTIVES
from ratiolab.objectives.state import make_state
from ratiolab.rollout.actor import ActorStats, ActorSupervisor, RestartBudget
from ratiolab.runs import CheckpointError, RunDir, decode_state, encode_state, rng_state
from ratiolab.tasks import Problem


class _Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _two_checkpoints(path: Path) -> RunDir:
    run = RunDir.create(path, {"a": 1})
    for step in (1, 2):
        state = {"opt": {"state": {0: {"step": torch.tensor(float(step))}}, "param_groups": [{"betas": (0.9, 0.99)}]},
                 "rng": rng_state()}
        run.save(step, {"w": torch.full((3,), float(step))}, state, keep=2)
    return run


# 1. loading runs no code ---------------------------------------------------------------------------
def test_a_pickled_state_with_a_payload_is_refused_and_not_run(tmp_path: Path) -> None:
    cfg = GymTrainConfig(algo="pqn", total_steps=128, eval_episodes=1,
                         pqn=PQNConfig(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1))
    gym_train(cfg, tmp_path / "run")
    folder = next((tmp_path / "run" / "checkpoints").glob("step-*"))
    for f in folder.iterdir():
        if f.name != "weights.safetensors":
            f.unlink()
    marker = tmp_path / "pwned"
    torch.save(_Payload(marker), folder / "state.pt")  # the crafted file of the issue
    with pytest.raises(CheckpointError, match=r"pickled state\.pt .* not loaded"):
        gym_train(cfg, tmp_path / "run", resume=True)
    assert not marker.exists()


def test_state_json_cannot_name_another_type(tmp_path: Path) -> None:
    tree = {"$dataclass": "subprocess.Popen", "fields": {"args": ["touch", str(tmp_path / "pwned")]}}
    with pytest.raises(CheckpointError, match=r"'subprocess\.Popen', which is not in ratiolab\.runs\.STATE_TYPES"):
        decode_state(tree, {})
    assert not (tmp_path / "pwned").exists()


def test_state_codec_round_trips_types_and_aliasing() -> None:
    shared = torch.arange(4.0)
    state = {
        "rng": rng_state(),
        "opt": {"state": {0: {"exp_avg": shared, "step": torch.tensor(3.0)}}, "param_groups": [{"betas": (0.9, 0.99)}]},
        "alias": shared,
        "view": shared[1:3],
        "arrays": [np.arange(5, dtype=np.uint32), np.ones((2, 3), np.float32), np.zeros(0)],
        "scalar": np.float64(0.1),
        "raw": b"\x00\xff",
        "problem": Problem("1+1=", "2", {"level": 1}),
        "$odd": None,
    }
    tree, tensors = encode_state(state)
    json.dumps(tree)  # JSON-able
    out = decode_state(json.loads(json.dumps(tree)), tensors)
    assert out["opt"]["param_groups"][0]["betas"] == (0.9, 0.99) and list(out["opt"]["state"]) == [0]
    assert out["alias"] is out["opt"]["state"][0]["exp_avg"] and torch.equal(out["view"], torch.tensor([1.0, 2.0]))
    assert out["arrays"][0].dtype == np.uint32 and out["arrays"][0].tolist() == [0, 1, 2, 3, 4]
    assert out["arrays"][1].shape == (2, 3) and out["arrays"][2].shape == (0,)
    assert type(out["scalar"]) is np.float64 and out["scalar"] == 0.1 and out["raw"] == b"\x00\xff"
    assert out["problem"] == Problem("1+1=", "2", {"level": 1}) and out["$odd"] is None
    assert out["rng"]["python"] == state["rng"]["python"]
    assert np.array_equal(out["rng"]["numpy"][1], state["rng"]["numpy"][1])
    with pytest.raises(TypeError, match=r"checkpoint state state\.x\[0\]: cannot store a set"):
        encode_state({"x": [{1}]})
    with pytest.raises(TypeError, match=r"state\.x: .*_Listed is not in ratiolab\.runs\.STATE_TYPES"):
        encode_state({"x": _Listed()})


@dataclasses.dataclass
class _Listed:
    a: int = 0



@pytest.mark.parametrize("name", [e.name for e in OBJECTIVES if e.state is not None])
def test_every_objective_state_survives_a_checkpoint(name: str) -> None:
    state = make_state(name)
    assert state is not None
    state.update({"reward/mean": 0.5, "approx_kl": 0.01, "clip_frac_low": 0.1, "clip_frac_high": 0.2, "kl/k3": 0.01,
                  "r2vpo/ratio_var": 0.3, "safe/kl": 0.02})
    tree, tensors = encode_state(state.state_dict())
    fresh = make_state(name)
    assert fresh is not None
    fresh.load_state_dict(decode_state(json.loads(json.dumps(tree)), tensors))
    assert fresh == state and fresh.state_dict() == state.state_dict()
    assert [type(v) for v in dataclasses.astuple(fresh)] == [type(v) for v in dataclasses.astuple(state)]

# 4. integrity --------------------------------------------------------------------------------------
def _flip(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))


DAMAGE = {
    "truncated weights": (lambda d: os.truncate(d / "weights.safetensors", 20),
                          "weights.safetensors does not match its checksum"),
    "flipped byte in state tensors": (lambda d: _flip(d / "state.safetensors"), "state.safetensors does not match"),
    "flipped byte in state.json": (lambda d: _flip(d / "state.json"), "state.json does not match"),
    "missing state.json": (lambda d: (d / "state.json").unlink(), "state.json is missing"),
    "missing manifest": (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    "garbage manifest": (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json is unreadable"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_latest_checkpoint_falls_back_to_the_last_intact_one(tmp_path: Path, case: str) -> None:
    run = _two_checkpoints(tmp_path / "run")
    damage, message = DAMAGE[case]
    damage(run.ckpt_dir / "step-00000002")
    with pytest.raises(CheckpointError, match=message):
        run.load(2)
    with pytest.warns(UserWarning, match=f"{message}.*resuming from the intact checkpoint at step 1"):
        ckpt = RunDir.open(run.path).latest()
    assert ckpt is not None and ckpt.step == 1 and torch.equal(ckpt.weights["w"], torch.ones(3))
    assert ckpt.state["opt"]["param_groups"][0]["betas"] == (0.9, 0.99)
    damage(run.ckpt_dir / "step-00000001")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        run.latest()


@pytest.mark.parametrize("pointer", ["garbage\x00", "step-00000009", None])
def test_a_bad_latest_pointer_uses_the_newest_intact_checkpoint(tmp_path: Path, pointer: str | None) -> None:
    run = _two_checkpoints(tmp_path / "run")
    if pointer is None:
        (run.ckpt_dir / "latest").unlink()
    else:
        (run.ckpt_dir / "latest").write_text(pointer)
    with pytest.warns(UserWarning, match="latest"):
        ckpt = run.latest()
    assert ckpt is not None and ckpt.step == 2


def test_torn_metrics_line_interrupted_saves_and_later_checkpoints(tmp_path: Path) -> None:
    run = _two_checkpoints(tmp_path / "run")
    run.log({"step": 1, "r": 1.0})
    with open(run.path / RunDir.METRICS, "a") as f:
        f.write('{"step": 2, "r": 0.')  # killed mid-write
    with pytest.warns(UserWarning, match="torn last line 2"):
        assert run.metrics() == [{"step": 1, "r": 1.0}]
    with pytest.warns(UserWarning):
        run.truncate_metrics(2)
    run.log({"step": 2, "r": 2.0})
    assert [r["step"] for r in run.metrics()] == [1, 2]
    (run.path / RunDir.METRICS).write_text('{"step": 1}\n{bad\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        run.metrics()
    (run.ckpt_dir / ".tmp-abc").mkdir()
    (run.ckpt_dir / ".tmp-abc" / "weights.safetensors").write_bytes(b"half")
    RunDir.open(run.path)  # a reader leaves it (the run may be live)
    assert (run.ckpt_dir / ".tmp-abc").is_dir()
    (run.path / RunDir.METRICS).write_text("")
    assert run.resume_point() is not None and not (run.ckpt_dir / ".tmp-abc").exists()
    for step in (5, 6):
        run.save(step, {"w": torch.zeros(1)}, {})
    run.save(4, {"w": torch.zeros(1)}, {})  # resumed from an earlier checkpoint: 5 and 6 are abandoned
    assert run.checkpoint_steps() == [4]


def test_save_fsyncs_files_and_folder_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunDir.create(tmp_path / "run", {})
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run.save(1, {"w": torch.zeros(2)}, {"x": 1})
    final = str(run.ckpt_dir.resolve() / "step-00000001")
    rename = events.index(("replace", str(run.ckpt_dir / "step-00000001")))
    tmp = next(p for kind, p in events[:rename] if kind == "fsync" and "/.tmp-" in p).split("/.tmp-")[0]
    synced = {p.rsplit("/", 1)[-1] for kind, p in events[:rename] if kind == "fsync" and "/.tmp-" in p}
    assert {"weights.safetensors", "state.safetensors", "state.json", "manifest.json"} <= synced
    assert any(kind == "fsync" and re.fullmatch(r".*/\.tmp-[^/]+", p) for kind, p in events[:rename])
    assert ("fsync", tmp) in events[rename:] and final.startswith(tmp)


# 2, 3, 5: resume -----------------------------------------------------------------------------------
SMALL = [
    "policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=2", "algo.samples_per_prompt=2",
    "algo.minibatches=1", "algo.micro_batches=1", "sampling.max_new_tokens=3", "eval_size=4", "eval_every=1",
    "checkpoint_every=1", "threads=1", "task.params={level: 1}",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _lm_cfg(tmp: Path, cache: Path, *extra: str) -> TrainConfig:
    return override(TrainConfig(), [*SMALL, f"policy.cache_dir={cache}", f"run_dir={tmp / 'run'}", *extra])


def test_lm_resume_refuses_changed_fields_and_reports_the_last_evaluation(tmp_path: Path, cache_dir: Path) -> None:
    cfg = _lm_cfg(tmp_path, cache_dir, "steps=1")
    lm_train(cfg, log=lambda _: None)
    changed = override(cfg, ["algo.lr=0.5", "task.params={level: 2}", "steps=3"])
    with pytest.raises(ConfigError, match=r"differ: algo.lr \(stored .*, given 0.5\); task.params.level \(stored 1, "
                                          r"given 2\)\. Drop those flags"):
        lm_train(changed, resume=True, log=lambda _: None)
    rows = (cfg_path := Path(cfg.run_dir) / RunDir.METRICS).read_text().splitlines()
    last = json.loads(rows[-1]) | {"eval/accuracy": 0.625}  # a value neither the base nor chance gives
    cfg_path.write_text("\n".join([*rows[:-1], json.dumps(last)]) + "\n")
    res = lm_train(cfg, resume=True, log=lambda _: None)  # finished: nothing to train, report rewritten
    assert res.final_accuracy == 0.625
    assert "-&gt; trained 62.5%" in res.report.read_text() or "-> trained 62.5%" in res.report.read_text()


def test_lm_run_killed_before_its_first_checkpoint_starts_over(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_mod = importlib.import_module("ratiolab.learner.train")
    cfg = _lm_cfg(tmp_path, cache_dir, "steps=1")
    real = train_mod.evaluate

    def killed(*args: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt  # killed during the base evaluation

    monkeypatch.setattr(train_mod, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        lm_train(cfg, log=lambda _: None)
    monkeypatch.setattr(train_mod, "evaluate", real)
    with pytest.raises(FileExistsError, match="--resume"):
        lm_train(cfg, log=lambda _: None)
    with pytest.warns(UserWarning, match="holds no checkpoint .* starting it from scratch"):
        lm_train(cfg, resume=True, log=lambda _: None)
    assert [r["step"] for r in RunDir.open(cfg.run_dir).metrics()] == [0, 1]


def test_cli_resume_reads_the_stored_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ratiolab.learner

    stored = override(TrainConfig(), [*SMALL, "steps=2", f"run_dir={tmp_path / 'run'}"])
    RunDir.create(tmp_path / "run", to_dict(stored) | {"policy_source": "x"})
    seen: list[tuple[TrainConfig, bool]] = []
    monkeypatch.setattr(ratiolab.learner, "train", lambda cfg, resume, **_: seen.append((cfg, resume)) or _Result())
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "5"]) == 0
    assert seen == [(override(stored, ["steps=5"]), True)]
    assert main(["train", "--resume", str(tmp_path / "run"), "--config", "x.yaml"]) == 2


class _Result:
    base_accuracy = final_accuracy = 0.5
    report = "report.html"


def _gym_cfg(total: int, **kw: Any) -> GymTrainConfig:
    pqn = PQNConfig(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1)
    return GymTrainConfig(algo="pqn", total_steps=total, eval_episodes=2, pqn=pqn, **kw)


def test_gym_finished_run_is_extended_and_reports_its_evaluation(tmp_path: Path) -> None:
    run = tmp_path / "run"
    gym_train(_gym_cfg(128), run)
    (run / "report.html").unlink()
    again = gym_train(_gym_cfg(128), run, resume=True)  # finished: nothing to train
    assert again.final_eval is None and "deterministic eval return" in (run / "report.html").read_text()
    argv = ["train", "--resume", str(run), "--env", "CartPole-v1", "--steps", "256"]
    assert main(argv) == 0  # the stored algo (pqn) and settings, extended to 256 steps
    assert [r["step"] for r in RunDir.open(run).metrics()] == [128, 256]
    assert RunDir.open(run).config()["total_steps"] == 256 and RunDir.open(run).config()["algo"] == "pqn"
    assert main(["train", "--resume", str(run), "--set", "pqn.gamma=0.5"]) == 2


def test_gym_run_stopped_before_its_first_checkpoint_starts_over(tmp_path: Path) -> None:
    cfg = _gym_cfg(256)

    def kill(row: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gym_train(cfg, tmp_path / "run", progress=kill)
    with pytest.warns(UserWarning, match="starting it from scratch"):
        gym_train(cfg, tmp_path / "run", resume=True)
    full = gym_train(cfg, tmp_path / "full")
    strip = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in RunDir.open(tmp_path / "run").metrics()]
    assert strip == [{k: v for k, v in r.items() if not k.startswith("time/")} for r in full.rows]


# 8. actor restart budget ---------------------------------------------------------------------------
def test_restart_budget_is_per_window() -> None:
    b = RestartBudget(limit=2, window=10)
    assert [b.allow(u) for u in (1, 3, 5)] == [True, True, False]  # 3 crashes within 10 batches
    assert b.allow(12)  # uid 1 left the window (12 - 1 >= 10), uid 3 is still in it
    assert not b.allow(12) and b.allow(13)  # at 13, uid 3 leaves too (13 - 3 = 10)
    per_run = RestartBudget(limit=3, window=0)
    assert [per_run.allow(u) for u in (1, 100, 1000, 10_000)] == [True, True, True, False]
    with pytest.raises(ValueError, match=r"async_rl\.max_restarts = -1"):
        AsyncConfig(max_restarts=-1).validate()


def test_supervisor_keeps_restarting_crashes_spread_over_windows() -> None:
    actor = types.SimpleNamespace(buffer=types.SimpleNamespace(close=lambda: None), stats=ActorStats(), next_uid=0)
    crashes = iter(range(5))

    def run(stop: Any) -> None:
        actor.next_uid += 10  # ten batches between crashes
        if next(crashes, None) is not None:
            raise RuntimeError("engine died")

    actor.run = run
    sup = ActorSupervisor(actor, RestartBudget(3, 5))  # type: ignore[arg-type]
    sup._loop()
    assert sup.error is None and actor.stats.restarts == 5
    burst = types.SimpleNamespace(buffer=actor.buffer, stats=ActorStats(), next_uid=7, run=lambda stop: 1 / 0)
    sup = ActorSupervisor(burst, RestartBudget(3, 5))  # type: ignore[arg-type]
    sup._loop()
    assert burst.stats.restarts == 3 and "after 3 restarts within 5 batches" in str(sup.error)
