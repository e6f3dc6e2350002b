"""Experiment trackers behind one small interface: TensorBoard, Weights & Biases (offline), MLflow (local).

``metrics.jsonl`` stays the source of truth: a run's :class:`~ratiolab.runs.RunDir` appends every row
there and then hands it to its tracker (:func:`make_trackers`, chosen with ``log`` / ``--log
tensorboard,wandb,mlflow``), which writes inside the run folder and never needs the network:

- ``tensorboard``: ``RUN/tensorboard/`` event files (``torch.utils.tensorboard``); the config as text
  and as hparams on a fresh start; flushed after every row, so TensorBoard shows a live run.
- ``wandb``: an offline run under ``RUN/wandb/`` (``wandb sync RUN/wandb/offline-run-*`` uploads it
  later). Offline mode, no login, no git/code/console/system-metrics capture, error reporting off.
- ``mlflow``: the SQLite store ``RUN/mlflow.db`` (MLflow 3 refuses its file store, which is in
  maintenance mode), an experiment and a run named after the run folder; the flattened config as params.
  MLflow's usage telemetry is switched off (``MLFLOW_DISABLE_TELEMETRY``) before it is imported.

Only numeric scalars reach a tracker (bools as 0/1; strings, lists and ``step`` itself, the x axis, are
left out). Non-finite values (NaN, +-inf) are left out by every tracker, with one warning per key:
TensorBoard and W&B would store them, but MLflow's SQL store turns +-inf into +-1.8e308, so the one
behaviour all three share is to skip them; ``metrics.jsonl`` keeps them.

Resume: ``RUN/trackers.json`` keeps the W&B run id and the MLflow run id, so a resumed run continues the
same tracker run. ``last_step`` is the step the resumed ``metrics.jsonl`` ends at (its checkpoint); what
the interrupted session logged after it is dropped where the format allows: TensorBoard purges those
events (``purge_step``). MLflow keeps them (its store cannot delete points: a step logged again holds two
points, the later timestamp from the resumed session). W&B writes one offline folder per session under the
same id; synced, they form one run that continues from its last step (W&B's resume), and W&B ignores steps
below a run's current step, so re-logged steps up to the interrupted session's last one keep its values.
"""

from __future__ import annotations

import importlib.util
import json
import math
import numbers
import os
import re
import secrets
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import yaml

from ratiolab.config import ConfigError
from ratiolab.runs import _flat, atomic_write_text

TRACKERS = ("tensorboard", "wandb", "mlflow")
#: The importable package each tracker needs (all in the ``trackers`` extra).
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
INSTALL = "pip install 'ratiolab[trackers]'"
STATE = "trackers.json"


class Tracker(Protocol):
    """One experiment tracker of a run; it receives the config when it is made."""

    def log(self, step: int, row: Mapping[str, float]) -> None:
        """Record the finite scalar metrics ``row`` at ``step``."""

    def close(self, failed: bool = False) -> None:
        """Flush and finish (``failed``: the run ended in an error)."""


def check_trackers(names: Sequence[str], packages: bool = False) -> tuple[str, ...]:
    """``names`` as a tuple after checking them: each a known tracker, listed once; with ``packages`` (before a
    run that logs to them starts) also that each tracker's package is installed."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"log = {names!r} must be a list of tracker names, e.g. log=[tensorboard, mlflow]")
    for i, name in enumerate(names):
        if name not in TRACKERS:
            raise ConfigError(f"log = {list(names)}: {name!r} is not a tracker; valid choices: {', '.join(TRACKERS)} "
                              "(--log tensorboard,wandb,mlflow)")
        if name in names[:i]:
            raise ConfigError(f"log = {list(names)}: {name!r} is listed twice; list each tracker once")
        if packages and importlib.util.find_spec(PACKAGES[name]) is None:
            raise ConfigError(f"log: the {name} tracker needs the {PACKAGES[name]!r} package, which is not "
                              f"installed; {INSTALL}")
    return tuple(names)


def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"algo.lr": ..}`` from a nested config dict; values other than numbers, strings and bools as text."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in _flat(config).items()}


def _load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        warnings.warn(f"{path} is not valid JSON; the W&B and MLflow trackers start new runs", stacklevel=3)
        return {}
    return state if isinstance(state, dict) else {}


class TensorBoardTracker:
    """Scalars into ``RUN/tensorboard``; a resumed run purges the events after ``last_step``."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], last_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = run_dir / "tensorboard"
        fresh = not any(folder.glob("events.out.tfevents.*"))
        self.writer = SummaryWriter(str(folder), purge_step=None if fresh or last_step is None else last_step + 1)
        if fresh:
            self.writer.add_text("config", "```\n" + yaml.safe_dump(dict(config), sort_keys=False) + "```")
            events = self.writer.file_writer
            assert events is not None
            for summary in hparams(flatten(config), {}):
                events.add_summary(summary)

    def log(self, step: int, row: Mapping[str, float]) -> None:
        for key, value in row.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class WandbTracker:
    """An offline W&B run in ``RUN/wandb``, project ``ratiolab``, named after the run folder; its id is kept
    in ``state`` (``trackers.json``) so that a resumed run continues it."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], state: dict[str, Any]) -> None:
        os.environ["WANDB_MODE"] = "offline"  # also for the wandb-core process it starts
        os.environ["WANDB_ERROR_REPORTING"] = "false"  # no Sentry reports
        import wandb

        settings = wandb.Settings(
            mode="offline", console="off", silent=True, disable_git=True, save_code=False, disable_code=True,
            disable_job_creation=True, x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True,
            x_disable_viewer=True,
        )
        state.setdefault("id", secrets.token_hex(4))  # 8 characters, as W&B's own ids
        self.run = wandb.init(dir=str(run_dir), project="ratiolab", name=run_dir.resolve().name, id=state["id"],
                              resume="allow", config=dict(config), settings=settings, reinit="create_new")

    def log(self, step: int, row: Mapping[str, float]) -> None:
        self.run.log(dict(row), step=step)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class MLflowTracker:
    """An MLflow run in the SQLite store ``RUN/mlflow.db`` (artifacts: ``RUN/mlartifacts``), experiment and
    run named after the run folder; its id is kept in ``state`` so that a resumed run continues it."""

    PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call
    PARAM_CHARS = 6000  # MLflow's limit on a param value

    def __init__(self, run_dir: Path, config: Mapping[str, Any], state: dict[str, Any]) -> None:
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # read when mlflow is imported and at every event
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._metric = Metric
        self.client = MlflowClient(tracking_uri=f"sqlite:///{(run_dir / 'mlflow.db').resolve()}")
        if "run_id" in state:
            self.client.update_run(state["run_id"], status="RUNNING")
        else:
            name = run_dir.resolve().name
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(
                name, artifact_location=(run_dir / "mlartifacts").resolve().as_uri())
            state["run_id"] = self.client.create_run(exp_id, run_name=name).info.run_id
            params = [Param(k, str(v)[: self.PARAM_CHARS]) for k, v in flatten(config).items()]
            for i in range(0, len(params), self.PARAMS_PER_BATCH):
                self.client.log_batch(state["run_id"], params=params[i : i + self.PARAMS_PER_BATCH])
        self.run_id: str = state["run_id"]

    def log(self, step: int, row: Mapping[str, float]) -> None:
        """Metric names keep MLflow's characters (letters, digits, ``_-. :/``); any other becomes ``_``."""
        now = int(time.time() * 1000)
        metrics = [self._metric(re.sub(r"[^\w\-. :/]", "_", k), v, now, step) for k, v in row.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class Trackers:
    """The trackers of one run as one :class:`Tracker`: rows are reduced to finite numeric scalars and sent to
    each; a context manager that closes them (as failed on an error)."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)
        self._warned: set[str] = set()

    def log(self, step: int, row: Mapping[str, Any]) -> None:
        values: dict[str, float] = {}
        for key, value in row.items():
            number = None if key == "step" else _scalar(value)
            if number is None:
                continue
            if math.isfinite(number):
                values[key] = number
            elif key not in self._warned:
                self._warned.add(key)
                warnings.warn(f"metric {key!r} is {number} at step {step}: trackers skip non-finite values "
                              "(metrics.jsonl keeps them)", stacklevel=2)
        if values:
            for tracker in self.trackers:
                tracker.log(step, values)

    def close(self, failed: bool = False) -> None:
        """Close every tracker, even when one of them fails (the first error is raised after)."""
        errors = []
        for tracker in self.trackers:
            try:
                tracker.close(failed)
            except Exception as err:
                errors.append(err)
        self.trackers = []
        if errors:
            raise errors[0]

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close(failed=kind is not None)


def _scalar(value: Any) -> float | None:
    """``value`` as a float if it is a numeric scalar (a number, bool, numpy scalar or 0-d tensor), else None."""
    if isinstance(value, str | bytes) or not (isinstance(value, numbers.Real) or getattr(value, "shape", None) == ()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def make_trackers(names: Sequence[str], run_dir: str | Path, config: Mapping[str, Any],
                  last_step: int | None = None) -> Trackers:
    """The trackers ``names`` (:data:`TRACKERS`) of the run in ``run_dir``, given its config dict.

    ``last_step``: for a resumed run, the step its ``metrics.jsonl`` ends at (-1: it starts over);
    ``None`` for a fresh run. Unknown or doubled names and a missing package raise :class:`ConfigError`.
    """
    check_trackers(names, packages=True)
    run = Path(run_dir)
    state = _load_state(run)
    made: list[Tracker] = []
    try:
        for name in names:
            if name == "tensorboard":
                made.append(TensorBoardTracker(run, config, last_step))
            elif name == "wandb":
                made.append(WandbTracker(run, config, state.setdefault("wandb", {})))
            else:
                made.append(MLflowTracker(run, config, state.setdefault("mlflow", {})))
    except BaseException:
        Trackers(made).close(failed=True)
        raise
    if state:
        atomic_write_text(run / STATE, json.dumps(state, indent=1) + "\n")
    return Trackers(made)
