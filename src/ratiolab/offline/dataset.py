"""Transition datasets (offline.md §13): typed arrays, a pyarrow schema, atomic parquet write, validated read.

A dataset is a folder holding ``transitions.parquet`` and ``manifest.json``. The manifest records the
format version, the parquet file's byte count and sha256, the column shapes and :class:`DatasetMeta`
(environment id, behaviour-policy kind, seeds, steps, source checkpoint, reference returns). Writing goes
to a temporary folder beside the target that is fsynced and renamed into place, so a crash leaves either
the previous state or the whole dataset, never a half-written one. Reading checks the checksum, the
parquet footer, every column's presence, type and shape, and finiteness; each failure is one
:class:`DatasetError` line naming the file, the column and the fix.

Columns (one row per transition): ``observations`` and ``next_observations`` (``float32[obs_dim]``);
``actions`` (``float32[act_dim]`` for continuous actions, ``int64`` for discrete ones); ``rewards``
(``float32``); ``terminals`` and ``truncations`` (``bool``: the episode ended in a terminal state /
was cut by a time limit, ``next_observations`` then being the true successor); ``episode_ids``
(``int64``); ``behav_logp`` (``float32``, the behaviour policy's log-probability or density of the
stored action, NaN where unknown).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ratiolab.runs import fsync_path, sha256_file

FORMAT = "ratiolab-transitions/1"
DATA_FILE = "transitions.parquet"
MANIFEST = "manifest.json"
#: Policy kinds a collection may record (D4RL's names, plus ``mixed`` for anything else).
POLICY_KINDS = ("random", "medium", "expert", "medium-replay", "mixed")
VECTOR_COLUMNS = ("observations", "next_observations")
SCALAR_COLUMNS = {"rewards": np.float32, "terminals": np.bool_, "truncations": np.bool_,
                  "episode_ids": np.int64, "behav_logp": np.float32}
COLUMNS = ("observations", "actions", "rewards", "next_observations", "terminals", "truncations",
           "episode_ids", "behav_logp")


class DatasetError(ValueError):
    """A dataset file is missing, damaged or inconsistent; the message names the file, the column and the fix."""


@dataclass(frozen=True)
class DatasetMeta:
    """How a dataset was made. ``ref_returns`` holds the mean undiscounted returns that normalise scores
    (``{"random": ..., "expert": ...}``, D4RL's 0 and 100), where the collection measured them."""

    env_id: str
    policy: str
    seeds: list[int]
    steps: int
    source: str = ""
    discrete: bool = False
    ref_returns: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TransitionDataset:
    """Aligned numpy arrays of ``n`` transitions (see the module docstring for the columns) and their meta."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    truncations: np.ndarray
    episode_ids: np.ndarray
    behav_logp: np.ndarray
    meta: DatasetMeta

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        """Action dimension (1 for a discrete action index)."""
        return 1 if self.actions.ndim == 1 else int(self.actions.shape[1])

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each complete episode (one that ends in a terminal or a truncation)."""
        ends = self.terminals | self.truncations
        ids = self.episode_ids
        complete = np.unique(ids[ends])
        sums = {int(e): 0.0 for e in complete}
        for e, r in zip(ids.tolist(), self.rewards.tolist(), strict=True):
            if e in sums:
                sums[e] += r
        return np.array([sums[int(e)] for e in complete], np.float64)

    def validate(self, where: str = "dataset") -> None:
        """Shapes, dtypes and finiteness of every column (:class:`DatasetError` naming ``where`` and the column)."""
        n = len(self)
        if self.meta.policy not in POLICY_KINDS:
            raise DatasetError(f"{where}: meta.policy = {self.meta.policy!r} is not one of {list(POLICY_KINDS)}")
        for name in VECTOR_COLUMNS:
            arr = getattr(self, name)
            if arr.ndim != 2 or arr.shape[0] != n:
                raise DatasetError(f"{where}: column {name!r} has shape {arr.shape}, expected ({n}, obs_dim)")
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError(
                f"{where}: column 'next_observations' has shape {self.next_observations.shape} but 'observations' "
                f"has {self.observations.shape}; both hold observations of one environment"
            )
        a = self.actions
        want_ndim = 1 if self.meta.discrete else 2
        if a.ndim != want_ndim or a.shape[0] != n:
            kind = "(n,) action indices" if self.meta.discrete else "(n, act_dim)"
            raise DatasetError(f"{where}: column 'actions' has shape {a.shape}, expected {kind} with n = {n}")
        for name in SCALAR_COLUMNS:
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise DatasetError(f"{where}: column {name!r} has shape {arr.shape}, expected ({n},)")
        for name in ("observations", "next_observations", "rewards", *(() if self.meta.discrete else ("actions",))):
            arr = getattr(self, name)
            bad = ~np.isfinite(arr)
            if bad.any():
                row = int(np.flatnonzero(bad.reshape(n, -1).any(1))[0])
                raise DatasetError(
                    f"{where}: column {name!r} holds NaN or infinity (first at row {row}); drop or repair those rows"
                )

    # -- arrow ----------------------------------------------------------------------------------
    def schema(self) -> pa.Schema:
        obs = pa.list_(pa.float32(), self.obs_dim)
        act = pa.int64() if self.meta.discrete else pa.list_(pa.float32(), self.act_dim)
        return pa.schema([
            ("observations", obs), ("actions", act), ("rewards", pa.float32()), ("next_observations", obs),
            ("terminals", pa.bool_()), ("truncations", pa.bool_()), ("episode_ids", pa.int64()),
            ("behav_logp", pa.float32()),
        ])

    def to_table(self) -> pa.Table:
        schema = self.schema()
        cols = []
        for f in schema:
            arr = np.ascontiguousarray(getattr(self, f.name))
            if pa.types.is_fixed_size_list(f.type):
                flat = pa.array(arr.astype(np.float32).reshape(-1), pa.float32())
                cols.append(pa.FixedSizeListArray.from_arrays(flat, f.type.list_size))
            else:
                cols.append(pa.array(arr.astype(f.type.to_pandas_dtype()), f.type))
        return pa.Table.from_arrays(cols, schema=schema)


def write_dataset(data: TransitionDataset, out: str | Path, overwrite: bool = False) -> Path:
    """Validate ``data`` and write it to the folder ``out`` atomically; returns ``out``.

    An existing ``out`` is refused unless ``overwrite`` (then it is replaced whole, after the new one is on disk).
    """
    out = Path(out)
    data.validate(where=str(out))
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} already exists; choose another --out or pass overwrite=True (--force)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        pq.write_table(data.to_table(), tmp / DATA_FILE)
        manifest = {
            "format": FORMAT,
            "file": DATA_FILE,
            "bytes": (tmp / DATA_FILE).stat().st_size,
            "sha256": sha256_file(tmp / DATA_FILE),
            "rows": len(data),
            "obs_dim": data.obs_dim,
            "act_dim": data.act_dim,
            "meta": asdict(data.meta),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        for name in (DATA_FILE, MANIFEST):
            fsync_path(tmp / name)
        fsync_path(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a dataset folder (no such directory); run `ratiolab data collect` first")
    if not path.is_file():
        raise DatasetError(f"{path} is missing; {folder} is not a ratiolab dataset (or was not fully written)")
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise DatasetError(f"{path}: format {doc.get('format')!r} is not {FORMAT!r}")
        missing = [k for k in ("file", "bytes", "sha256", "obs_dim", "act_dim", "meta") if k not in doc]
        if missing:
            raise DatasetError(f"{path} lacks {missing}; re-collect the dataset")
        return dict(doc)
    except DatasetError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DatasetError(f"{path} is unreadable ({err!r}); re-collect the dataset") from err


def _column(table: pa.Table, name: str, path: Path) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise DatasetError(
            f"{path}: column {name!r} is missing (columns: {table.column_names}); re-collect the dataset"
        )
    return table.column(name)


def _vector(col: pa.ChunkedArray, name: str, dim: int, path: Path) -> np.ndarray:
    arr = col.combine_chunks()
    if not (pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise DatasetError(f"{path}: column {name!r} has type {arr.type}, expected a list of float32 of length {dim}")
    lengths = np.asarray(arr.value_lengths().fill_null(-1)) if not pa.types.is_fixed_size_list(arr.type) else None
    if lengths is not None and (lengths != dim).any():
        row = int(np.flatnonzero(lengths != dim)[0])
        raise DatasetError(f"{path}: column {name!r} row {row} has length {lengths[row]}, expected {dim} (manifest)")
    if pa.types.is_fixed_size_list(arr.type) and arr.type.list_size != dim:
        raise DatasetError(f"{path}: column {name!r} has width {arr.type.list_size}, expected {dim} (manifest)")
    if arr.null_count:
        raise DatasetError(f"{path}: column {name!r} has {arr.null_count} null rows")
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(arr), dim)


def read_dataset(folder: str | Path) -> TransitionDataset:
    """Load and validate the dataset in ``folder`` (checksum, parquet, columns, shapes, finiteness)."""
    folder = Path(folder)
    doc = _manifest(folder)
    path = folder / str(doc["file"])
    if not path.is_file():
        raise DatasetError(f"{path} is missing (listed in {folder / MANIFEST}); re-collect the dataset")
    if path.stat().st_size != int(doc["bytes"]) or sha256_file(path) != doc["sha256"]:
        raise DatasetError(
            f"{path} does not match its size/sha256 in {MANIFEST} (truncated or modified); re-collect the dataset"
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DatasetError(f"{path} is not a readable parquet file ({err}); re-collect the dataset") from err
    try:
        meta = DatasetMeta(**doc["meta"])
    except TypeError as err:
        raise DatasetError(f"{folder / MANIFEST}: meta is invalid ({err})") from err
    obs_dim, act_dim = int(doc["obs_dim"]), int(doc["act_dim"])
    arrays: dict[str, np.ndarray] = {}
    for name in COLUMNS:
        col = _column(table, name, path)
        if name in VECTOR_COLUMNS:
            arrays[name] = _vector(col, name, obs_dim, path)
        elif name == "actions":
            arrays[name] = (np.asarray(col.to_numpy(), np.int64) if meta.discrete
                            else _vector(col, name, act_dim, path))
        else:
            if col.null_count:
                raise DatasetError(f"{path}: column {name!r} has {col.null_count} null rows")
            arrays[name] = np.asarray(col.to_numpy(), SCALAR_COLUMNS[name])
    data = TransitionDataset(**arrays, meta=meta)
    data.validate(where=str(path))
    return data
