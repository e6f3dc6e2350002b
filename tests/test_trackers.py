"""The experiment trackers write what they are given into the run folder and read it back from their own files:
the TensorBoard event file, the MLflow SQLite store and the W&B offline run file; nothing reaches the network."""

from __future__ import annotations

import importlib.util
import json
import math
import socket
import struct
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from ratiolab.cli import main
from ratiolab.config import ConfigError
from ratiolab.trackers import STATE, Trackers, check_trackers, make_trackers

CONFIG = {"seed": 3, "algo": {"objective": "ppo", "lr": 0.001}, "log": ["tensorboard"]}
ROWS = [{"step": 1, "loss": 1.5, "reward/mean": 0.25}, {"step": 2, "loss": 1.25, "reward/mean": 0.5},
        {"step": 3, "loss": 1.0, "reward/mean": 0.75}]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Record every socket connection that is neither a local (unix) socket nor to this machine, and fail on one;
    W&B's endpoint points at a closed local port, so its own process could not reach the service either."""
    attempts: list[Any] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"test: no network ({address})")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    yield
    assert attempts == []


def _log_all(trackers: Trackers, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        trackers.log(row["step"], row)


# names, packages, values ---------------------------------------------------------------------------------
def test_bad_names_are_one_line_errors_naming_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"log = \['tensorbord'\]: 'tensorbord' is not a tracker; valid choices: "
                       r"tensorboard, wandb, mlflow"):
        check_trackers(["tensorbord"])
    with pytest.raises(ConfigError, match="'mlflow' is listed twice"):
        check_trackers(["mlflow", "mlflow"])
    with pytest.raises(ConfigError, match="must be a list of tracker names"):
        check_trackers("tensorboard")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert check_trackers(["wandb"]) == ("wandb",)  # a stored config loads without the package
    with pytest.raises(ConfigError, match=r"the wandb tracker needs the 'wandb' package.*pip install "
                       r"'ratiolab\[trackers\]'"):
        check_trackers(["wandb"], packages=True)


class Recorder:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.closed: list[bool] = []

    def log(self, step: int, row: Any) -> None:
        self.rows.append((step, dict(row)))

    def close(self, failed: bool = False) -> None:
        self.closed.append(failed)


def test_only_finite_numeric_scalars_reach_a_tracker() -> None:
    rec = Recorder()
    trackers = Trackers([rec])
    row = {"step": 4, "loss": 0.5, "n": 3, "flag": True, "np32": np.float32(0.25), "np_int": np.int64(7),
           "tensor": torch.tensor(2.5), "name": "uid-1", "list": [1.0, 2.0], "vector": torch.ones(2),
           "nan": math.nan, "inf": math.inf, "none": None}
    with pytest.warns(UserWarning, match=r"metric 'nan' is nan at step 4: trackers skip non-finite"):
        trackers.log(4, row)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per key, not per row
        trackers.log(5, {"nan": math.nan, "inf": -math.inf, "loss": 0.25})
    assert rec.rows == [(4, {"loss": 0.5, "n": 3.0, "flag": 1.0, "np32": 0.25, "np_int": 7.0, "tensor": 2.5}),
                        (5, {"loss": 0.25})]
    with pytest.raises(RuntimeError), trackers:
        raise RuntimeError("training failed")
    assert rec.closed == [True]


# TensorBoard ---------------------------------------------------------------------------------------------
def _scalars(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def test_tensorboard_event_file_holds_the_rows_and_a_resume_replaces_steps_after_the_checkpoint(
    tmp_path: Path,
) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard tracker needs pip install 'ratiolab[trackers]'")
    with make_trackers(["tensorboard"], tmp_path, CONFIG) as trackers:
        _log_all(trackers, ROWS)
    acc = _scalars(tmp_path / "tensorboard")
    assert sorted(acc.Tags()["scalars"]) == ["loss", "reward/mean"]
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 1.5), (2, 1.25), (3, 1.0)]
    assert "config/text_summary" in acc.Tags()["tensors"]
    # resumed from the checkpoint at step 1: steps 2 and 3 are logged again with other values
    with make_trackers(["tensorboard"], tmp_path, CONFIG, last_step=1) as trackers:
        _log_all(trackers, [{"step": 2, "loss": 9.0}, {"step": 3, "loss": 8.0}])
    assert [(e.step, e.value) for e in _scalars(tmp_path / "tensorboard").Scalars("loss")] == [
        (1, 1.5), (2, 9.0), (3, 8.0)]


# MLflow (its import and a new store take seconds: one run, resumed once, serves every MLflow test) -------
@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    pytest.importorskip("mlflow", reason="the mlflow tracker needs pip install 'ratiolab[trackers]'")
    run = tmp_path_factory.mktemp("mlflow") / "my-run"
    run.mkdir()
    with make_trackers(["mlflow"], run, CONFIG) as trackers:
        _log_all(trackers, ROWS)
    first_id = json.loads((run / STATE).read_text())["mlflow"]["run_id"]
    with make_trackers(["mlflow"], run, CONFIG, last_step=2) as trackers:
        _log_all(trackers, [{"step": 3, "loss": 0.5}, {"step": 4, "loss": 0.25, "pass@2 (k=2)": 1.0}])
    assert json.loads((run / STATE).read_text())["mlflow"]["run_id"] == first_id
    from mlflow.tracking import MlflowClient

    return run, MlflowClient(f"sqlite:///{run / 'mlflow.db'}").get_run(first_id)


def test_mlflow_store_holds_the_metrics_params_and_the_resumed_session(mlflow_run: tuple[Path, Any]) -> None:
    from mlflow.tracking import MlflowClient

    run, record = mlflow_run
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    assert client.get_experiment(record.info.experiment_id).name == "my-run"
    assert record.info.run_name == "my-run" and record.info.status == "FINISHED"
    assert record.data.params == {"seed": "3", "algo.objective": "ppo", "algo.lr": "0.001", "log": "['tensorboard']"}
    history = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(record.info.run_id, "loss"))
    # the store keeps the interrupted session's step 3 (1.0) beside the resumed one's (0.5, logged later)
    assert [(s, v) for s, _, v in history] == [(1, 1.5), (2, 1.25), (3, 1.0), (3, 0.5), (4, 0.25)]
    assert [(m.step, m.value) for m in client.get_metric_history(record.info.run_id, "reward/mean")] == [
        (1, 0.25), (2, 0.5), (3, 0.75)]
    assert record.data.metrics == {"loss": 0.25, "reward/mean": 0.75, "pass_2 _k_2_": 1.0}  # MLflow's characters


def test_mlflow_run_that_fails_is_marked_failed(mlflow_run: tuple[Path, Any]) -> None:
    from mlflow.tracking import MlflowClient

    run, record = mlflow_run
    with pytest.raises(KeyboardInterrupt), make_trackers(["mlflow"], run, CONFIG, last_step=4) as trackers:
        trackers.log(5, {"loss": 0.125})
        raise KeyboardInterrupt
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    assert client.get_run(record.info.run_id).info.status == "FAILED"


# W&B offline ---------------------------------------------------------------------------------------------
def _wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a ``.wandb`` file: a 7-byte ``:W&B`` header, then LevelDB-log blocks of 32 KiB of
    chunks (crc32, length, type: 1 full, 2 first, 3 middle, 4 last). W&B's service finishes writing the file
    just after ``finish`` returns: wait (at most 10 s) for its ``exit`` record."""
    from wandb.proto import wandb_internal_pb2

    for _ in range(100):
        data, pos, records, buf = path.read_bytes(), 7, [], b""
        assert data[:4] == b":W&B"
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            _, n, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
            if kind == 0:  # block padding
                pos += left
                continue
            buf, pos = buf + data[pos + 7 : pos + 7 + n], pos + 7 + n
            if kind in (1, 4):
                records.append(wandb_internal_pb2.Record.FromString(buf))
                buf = b""
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        time.sleep(0.1)
    raise AssertionError(f"{path} has no exit record after 10 s")


def _items(history: Any) -> dict[str, Any]:
    """A history record's values by key (W&B keeps a key's parts in ``nested_key``)."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in history.item}


def test_wandb_offline_run_holds_the_rows_and_config_and_a_resume_keeps_its_id(tmp_path: Path) -> None:
    pytest.importorskip("wandb", reason="the wandb tracker needs pip install 'ratiolab[trackers]'")
    with make_trackers(["wandb"], tmp_path, CONFIG) as trackers:
        _log_all(trackers, ROWS)
    run_id = json.loads((tmp_path / STATE).read_text())["wandb"]["id"]
    with make_trackers(["wandb"], tmp_path, CONFIG, last_step=3) as trackers:
        trackers.log(4, {"loss": 0.5})
    first, second = sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}.wandb"),
                           key=lambda p: p.stat().st_mtime_ns)  # one folder per session, the same run id
    records = _wandb_records(first)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_id == run_id and run.display_name == tmp_path.name and run.project == "ratiolab"
    config = {i.key: json.loads(i.value_json) for i in run.config.update if i.key != "_wandb"}
    assert config == CONFIG
    history = [{k: v for k, v in _items(r.history).items() if k in ("_step", "loss", "reward/mean")}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert history == [{"_step": 1, "loss": 1.5, "reward/mean": 0.25}, {"_step": 2, "loss": 1.25, "reward/mean": 0.5},
                       {"_step": 3, "loss": 1.0, "reward/mean": 0.75}]
    resumed = [r for r in _wandb_records(second) if r.WhichOneof("record_type") == "history"]
    assert [{k: v for k, v in _items(r.history).items() if k in ("_step", "loss")} for r in resumed] == [
        {"_step": 4, "loss": 0.5}]


# the command line ----------------------------------------------------------------------------------------
def _same_as_metrics(run: Path) -> set[str]:
    """Assert that the run's TensorBoard scalars are its metrics.jsonl rows (each step once); their keys."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    acc = _scalars(run / "tensorboard")
    keys = {k for row in rows for k, v in row.items() if k != "step" and isinstance(v, int | float)}
    assert set(acc.Tags()["scalars"]) == keys
    for key in keys:
        logged = [(r["step"], r[key]) for r in rows if key in r]
        assert [e.step for e in acc.Scalars(key)] == [s for s, _ in logged]
        assert [e.value for e in acc.Scalars(key)] == pytest.approx([v for _, v in logged], rel=1e-6)  # float32
    return keys


def test_gym_run_with_log_tensorboard_and_its_resume_write_every_logged_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard tracker needs pip install 'ratiolab[trackers]'")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--env", "CartPole-v1", "--run-dir", "run", "--set", "total_steps=256", "--set",
                 "ppo.num_steps=32", "--set", "ppo.num_minibatches=2", "--set", "eval_episodes=1",
                 "--set", "checkpoint_every=1", "--log", "tensorboard"]) == 0
    assert yaml.safe_load((tmp_path / "run/config.yaml").read_text())["log"] == ["tensorboard"]
    (tmp_path / "run/checkpoints/latest").write_text("step-00000128")  # as if stopped after the first update
    assert main(["train", "--resume", "run", "--steps", "384"]) == 0
    assert len(_same_as_metrics(tmp_path / "run")) > 5
    assert [e.step for e in _scalars(tmp_path / "run/tensorboard").Scalars("loss/policy")] == [128, 256, 384]


@pytest.mark.slow  # pre-training and two short runs: the LM wiring (step-0 row, resume)
def test_language_model_run_and_its_resume_send_every_row_to_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard tracker needs pip install 'ratiolab[trackers]'")
    from ratiolab.config import override
    from ratiolab.learner import TrainConfig, train

    small = ["policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=2", "algo.samples_per_prompt=2",
             "algo.minibatches=1", "sampling.max_new_tokens=3", "eval_size=2", "checkpoint_every=1", "threads=1",
             f"policy.cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / 'run'}", "log=[tensorboard]"]
    cfg = override(TrainConfig(), [*small, "steps=2"])
    train(cfg, log=lambda _: None)
    train(override(cfg, ["steps=3"]), resume=True, log=lambda _: None)
    keys = _same_as_metrics(tmp_path / "run")
    assert {"eval/accuracy", "reward/mean", "loss"} <= keys
    assert [e.step for e in _scalars(tmp_path / "run/tensorboard").Scalars("eval/accuracy")] == [0, 2, 3]
