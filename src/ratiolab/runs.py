"""The run directory (DESIGN §3): ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``report.html``.

Checkpoints are written atomically: everything goes to a temporary ``.tmp-*`` folder whose files
and folder are fsynced before it is renamed into place, and the ``latest`` pointer is replaced with
``os.replace``, so a crash at any moment leaves the previous checkpoint intact; a resume
removes interrupted ``.tmp-*`` folders. On resume the metrics log is cut back to the checkpoint's
step, so no step is logged twice; a torn last line (a crash mid-write) is dropped with a warning.

A checkpoint folder holds no pickle: the weights, either a Hugging Face ``save_pretrained`` folder
(``config.json``, ``model.safetensors``, the tokenizer; a language-model run: plain
``AutoModelForCausalLM.from_pretrained`` loads the checkpoint, tied embeddings stored once) or
``weights.safetensors`` (tensors by name; a gym run); the trainer's state (optimiser, RNG states,
objective state, ...) split into ``state.safetensors`` (every tensor and array) and ``state.json`` (the
rest, see :func:`encode_state`); and ``manifest.json`` with the size and SHA-256 of every file, checked
on load. A damaged ``latest`` checkpoint falls back to the newest intact one with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from ratiolab.config import ConfigError

if TYPE_CHECKING:
    from ratiolab.trackers import Tracker

#: The dataclasses a checkpoint's ``state.json`` may rebuild (the ReMix replay window stores scored
#: batches). Rebuilding sets the stored fields on an instance made without ``__init__`` (as pickle
#: does) and imports nothing outside this list, so a crafted file cannot run code.
STATE_TYPES = (
    "ratiolab.learner.lm.Scored",
    "ratiolab.rollout.experience.Experience",
    "ratiolab.engines.sampling.Rollout",
    "ratiolab.tasks.base.Problem",
)
FORMAT = "ratiolab-checkpoint/2"
STATE_FILES = ("state.safetensors", "state.json")
#: The weights of a checkpoint: a tensor dict (gym runs) or a ``save_pretrained`` model (language-model runs).
WEIGHTS, HF_WEIGHTS = "weights.safetensors", "model.safetensors"


def default_run_dir(*parts: str, root: str = "runs") -> str:
    """``root/<parts joined by '-'>-<local time YYYYmmdd-HHMMSS>``, the folder of a run given none; a
    numbered suffix keeps it new when two runs start in the same second."""
    base = Path(root) / "-".join([*parts, time.strftime("%Y%m%d-%H%M%S")])
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return str(out)


def load_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Load a checkpoint's ``weights`` into ``model``; a parameter the file omits must be tied to one it
    holds (``save_pretrained`` stores tied embeddings once), any other gap or extra key is an error."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    params = model.state_dict()
    stored = {params[k].data_ptr() for k in weights if k in params}
    untied = [k for k in missing if params[k].data_ptr() not in stored]
    if untied or unexpected:
        raise CheckpointError(f"checkpoint weights do not fit the model: missing {untied}, unexpected {unexpected}; "
                              "resume with the model the run started from")


def step_seed(seed: int, step: int, salt: str) -> int:
    """A 31-bit seed for ``(seed, step, salt)``, stable across processes (room for derived seeds): every
    seeded part of a run (problems, sampler, minibatch order) derives its seed from the step, so a
    resumed run continues bit for bit."""
    digest = hashlib.blake2b(f"{seed}:{step}:{salt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") >> 1


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged or not loadable; the message names the file and the fix."""


def fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a fsynced temporary file in the same folder, ``os.replace`` and a
    fsync of the folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def rng_state() -> dict[str, Any]:
    """The RNG states of python, numpy and torch (CPU)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


# state codec: tensors -> safetensors, the rest -> JSON ---------------------------------------------
def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._ids: dict[int, str] = {}
        self._seen: list[torch.Tensor] = []  # keeps every keyed object alive, so no id is reused
        self._storages: set[int] = set()

    def tensor(self, t: torch.Tensor) -> str:
        """The key of ``t``; one object stored once (aliasing survives), other views of a storage copied."""
        key = self._ids.get(id(t))
        if key is None:
            key = self._ids[id(t)] = str(len(self.tensors))
            self._seen.append(t)
            out = t.detach().cpu()
            ptr = out.untyped_storage().data_ptr()
            if ptr in self._storages or not out.is_contiguous() or out.untyped_storage().nbytes() != out.nbytes:
                out = out.clone(memory_format=torch.contiguous_format)
            self._storages.add(out.untyped_storage().data_ptr())
            self.tensors[key] = out
        return key

    def encode(self, x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            return {"$tensor": self.tensor(x)}
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise TypeError(f"checkpoint state {path}: numpy object arrays cannot be stored; convert them")
            raw = torch.from_numpy(np.ascontiguousarray(x).reshape(-1).view(np.uint8).copy())
            return {"$ndarray": self.tensor(raw), "dtype": x.dtype.str, "shape": list(x.shape)}
        if isinstance(x, np.generic):
            return {"$npscalar": x.dtype.str, "value": x.item()}
        if x is None or isinstance(x, bool | int | float | str):
            return x
        if isinstance(x, bytes):
            return {"$bytes": self.tensor(torch.frombuffer(bytearray(x), dtype=torch.uint8))}
        if isinstance(x, tuple):
            return {"$tuple": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, Mapping):
            if all(isinstance(k, str) and not k.startswith("$") for k in x):
                return {k: self.encode(v, f"{path}.{k}") for k, v in x.items()}
            return {"$items": [[self.encode(k, path), self.encode(v, f"{path}[{k!r}]")] for k, v in x.items()]}
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            name = _type_name(type(x))
            if name not in STATE_TYPES:
                raise TypeError(f"checkpoint state {path}: {name} is not in ratiolab.runs.STATE_TYPES; add it there")
            fields = {f.name: self.encode(getattr(x, f.name), f"{path}.{f.name}") for f in dataclasses.fields(x)}
            return {"$dataclass": name, "fields": fields}
        raise TypeError(f"checkpoint state {path}: cannot store a {type(x).__name__}; use tensors, arrays, "
                        "numbers, strings, lists, tuples, dicts or a dataclass in ratiolab.runs.STATE_TYPES")


def encode_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """``(tree, tensors)``: a JSON-able tree and the tensors it refers to by key.

    Tensors and numpy arrays go to ``tensors`` (arrays as raw bytes plus dtype and shape); tuples,
    dicts with non-string keys, bytes, numpy scalars and the dataclasses in :data:`STATE_TYPES` are
    tagged so that :func:`decode_state` rebuilds them with their types. Anything else is refused.
    """
    enc = _Encoder()
    return enc.encode(state, "state"), enc.tensors


def _dataclass(name: str, fields: dict[str, Any]) -> Any:
    if name not in STATE_TYPES:
        raise CheckpointError(f"state.json asks for type {name!r}, which is not in ratiolab.runs.STATE_TYPES: "
                              "refused (a checkpoint only rebuilds the listed dataclasses)")
    module, _, qual = name.rpartition(".")
    cls = getattr(importlib.import_module(module), qual)
    obj = object.__new__(cls)
    for k, v in fields.items():
        object.__setattr__(obj, k, v)
    return obj


def decode_state(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode_state`; only builds plain data and :data:`STATE_TYPES` dataclasses."""

    def tensor(key: Any) -> torch.Tensor:
        if not isinstance(key, str) or key not in tensors:
            raise CheckpointError(f"state.json refers to tensor {key!r}, which state.safetensors lacks")
        return tensors[key]

    def dec(x: Any) -> Any:
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "$tensor" in x:
            return tensor(x["$tensor"])
        if "$ndarray" in x:
            raw = tensor(x["$ndarray"]).numpy()
            return raw.view(np.dtype(x["dtype"])).reshape(x["shape"]).copy()
        if "$npscalar" in x:
            return np.dtype(x["$npscalar"]).type(x["value"])
        if "$bytes" in x:
            return tensor(x["$bytes"]).numpy().tobytes()
        if "$tuple" in x:
            return tuple(dec(v) for v in x["$tuple"])
        if "$items" in x:
            return {dec(k): dec(v) for k, v in x["$items"]}
        if "$dataclass" in x:
            return _dataclass(x["$dataclass"], {k: dec(v) for k, v in x["fields"].items()})
        return {k: dec(v) for k, v in x.items()}

    return dec(tree)


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# config on resume ------------------------------------------------------------------------------------
def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_config(
    run: Path, stored: Mapping[str, Any], given: Mapping[str, Any], may_change: Iterable[str]
) -> None:
    """Refuse to resume ``run`` with a config ``given`` that differs from ``stored`` outside ``may_change``.

    Both are plain dicts of the same config class (``to_dict``); the error names every differing field
    with both values.
    """
    a, b, free = _flat(stored), _flat(given), set(may_change)
    diff = [k for k in sorted(a.keys() | b.keys()) if k not in free and a.get(k) != b.get(k)]
    if diff:
        fields = "; ".join(f"{k} (stored {a.get(k)!r}, given {b.get(k)!r})" for k in diff)
        raise ConfigError(
            f"resume: {run} continues the config in its config.yaml, and these fields differ: {fields}. "
            f"Drop those flags (only {sorted(free)} may change on resume) or start a new run in another folder"
        )


@dataclass(frozen=True)
class Checkpoint:
    step: int
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]
    folder: Path

    @property
    def is_model(self) -> bool:
        """Whether the weights are a ``save_pretrained`` folder (``from_pretrained`` loads :attr:`folder`)."""
        return (self.folder / "config.json").is_file()


class RunDir:
    """One run's folder. Create it with :meth:`create` (fresh) or :meth:`open` (resume)."""

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ckpt_dir = path / "checkpoints"
        self.tracker: Tracker | None = None  # also receives every logged row (ratiolab.trackers.make_trackers)

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        """A fresh run folder with ``config.yaml``; refuses a folder that already holds a run."""
        p = Path(path)
        if (p / cls.CONFIG).exists():
            raise FileExistsError(f"{p} already holds a run; pass --resume {p} to continue it (a run that never "
                                  "reached its first checkpoint starts over) or choose another --run-dir")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=p.parent, prefix=f".{p.name}."))
        (tmp / "checkpoints").mkdir()
        (tmp / cls.CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
        if p.exists():
            p.rmdir()  # an empty folder left by the user: replace it
        os.replace(tmp, p)
        return cls(p)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        p = Path(path)
        if not (p / cls.CONFIG).is_file():
            raise FileNotFoundError(f"{p} is not a run directory (no {cls.CONFIG}); check the --resume path")
        return cls(p)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = yaml.safe_load((self.path / self.CONFIG).read_text())
        return out

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace ``config.yaml`` (a resume that extended the run records its new length)."""
        atomic_write_text(self.path / self.CONFIG, yaml.safe_dump(config, sort_keys=False))

    # metrics -----------------------------------------------------------------------------------
    def log(self, row: dict[str, Any]) -> None:
        """Append one step's metrics as a JSON line, then hand them to :attr:`tracker` (if set)."""
        with open(self.path / self.METRICS, "a") as f:
            f.write(json.dumps(row, default=float) + "\n")
        if self.tracker is not None:
            self.tracker.log(int(row.get("step", 0)), row)

    def metrics(self) -> list[dict[str, Any]]:
        """The logged rows; a torn last line (a crash mid-write) is dropped with a warning."""
        p = self.path / self.METRICS
        if not p.exists():
            return []
        lines = [(i, line) for i, line in enumerate(p.read_text().splitlines(), 1) if line.strip()]
        rows = []
        for i, line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                if i != lines[-1][0]:
                    raise ValueError(f"{p} line {i} is not valid JSON ({err}); repair or delete that line") from err
                warnings.warn(f"{p}: dropped a torn last line {i} (a crash while it was written)", stacklevel=2)
        return rows

    def truncate_metrics(self, step: int) -> None:
        """Drop logged rows with ``row["step"] > step`` (rows written after the checkpoint)."""
        rows = [r for r in self.metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.path / self.METRICS, "".join(json.dumps(r) + "\n" for r in rows))

    def last_values(self, keys: Iterable[str]) -> dict[str, Any]:
        """The last logged value of each of ``keys`` (those never logged are absent)."""
        out: dict[str, Any] = {}
        for row in self.metrics():
            out.update({k: row[k] for k in keys if k in row})
        return out

    # checkpoints -------------------------------------------------------------------------------
    def save(
        self, step: int, weights: Mapping[str, torch.Tensor] | PreTrainedModel, state: dict[str, Any], keep: int = 2,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> Path:
        """Write checkpoint ``step`` atomically, point ``latest`` at it, keep the newest ``keep``.

        ``weights``: a tensor dict (``weights.safetensors``) or a model, written with ``save_pretrained``
        (with ``tokenizer``, a folder that ``from_pretrained`` and ``ratiolab eval --model`` load).
        Checkpoints of later steps (left by a run that resumed from an earlier one) are removed.
        """
        final = self.ckpt_dir / f"step-{step:08d}"
        tmp = Path(tempfile.mkdtemp(dir=self.ckpt_dir, prefix=".tmp-"))
        tree, tensors = encode_state(state)
        if isinstance(weights, PreTrainedModel):
            shown = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every checkpoint
            try:
                weights.save_pretrained(tmp)
            finally:
                if shown:
                    hf_logging.enable_progress_bar()
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        else:
            save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS))
        save_file(tensors, str(tmp / STATE_FILES[0]))
        (tmp / STATE_FILES[1]).write_text(json.dumps({"format": FORMAT, "state": tree}))
        names = sorted(f.name for f in tmp.iterdir())
        files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)} for name in names}
        (tmp / "manifest.json").write_text(json.dumps({"format": FORMAT, "step": step, "files": files}, indent=1))
        for name in (*names, "manifest.json"):
            fsync_path(tmp / name)
        fsync_path(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_path(self.ckpt_dir)
        atomic_write_text(self.ckpt_dir / "latest", final.name)
        steps = self.checkpoint_steps()
        for old in [s for s in steps if s > step] + [s for s in steps if s <= step][:-keep]:
            shutil.rmtree(self.ckpt_dir / f"step-{old:08d}")
        return final

    def checkpoint_steps(self) -> list[int]:
        """Steps of the kept checkpoints, oldest first."""
        steps = []
        for p in self.ckpt_dir.glob("step-*"):
            tail = p.name.split("-", 1)[1]
            if p.is_dir() and tail.isdigit():
                steps.append(int(tail))
        return sorted(steps)

    def load(self, step: int) -> Checkpoint:
        """Checkpoint ``step``, its files checked against the manifest; a step that is not kept raises
        ``ValueError`` listing the kept ones, a damaged one :class:`CheckpointError` naming the file."""
        folder = self.ckpt_dir / f"step-{step:08d}"
        if not folder.is_dir():
            raise ValueError(
                f"step: {self.path} keeps no checkpoint at step {step}; kept steps: {self.checkpoint_steps()}"
            )
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            if (folder / "state.pt").exists():
                raise CheckpointError(f"{folder} holds a pickled state.pt (an older ratiolab): it is not loaded, "
                                      "since unpickling can run arbitrary code; start a new run")
            raise CheckpointError(f"{folder} is damaged: manifest.json is missing")
        try:
            files = json.loads(manifest.read_text())["files"]
            expected = {str(name): (int(f["bytes"]), str(f["sha256"])) for name, f in files.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{folder} is damaged: manifest.json is unreadable ({err!r})") from err
        listed = [n for n in (*STATE_FILES, WEIGHTS if WEIGHTS in expected else HF_WEIGHTS) if n not in expected]
        odd = [n for n in expected if Path(n).name != n or n.startswith(".")]
        if listed or odd:
            raise CheckpointError(f"{folder} is damaged: manifest.json " + (f"lacks {listed}" if listed else
                                  f"names files outside the folder: {odd}"))
        for name, (size, sha) in expected.items():
            f = folder / name
            if not f.is_file():
                raise CheckpointError(f"{folder} is damaged: {name} is missing")
            if f.stat().st_size != size or sha256_file(f) != sha:
                raise CheckpointError(f"{folder} is damaged: {name} does not match its checksum in manifest.json")
        try:
            weights = load_file(str(folder / (WEIGHTS if WEIGHTS in expected else HF_WEIGHTS)))
            doc = json.loads((folder / STATE_FILES[1]).read_text())
            if doc.get("format") != FORMAT:
                raise CheckpointError(f"{folder}: state.json has format {doc.get('format')!r}, expected {FORMAT}")
            state = decode_state(doc["state"], load_file(str(folder / STATE_FILES[0])))
        except CheckpointError:
            raise
        except Exception as err:  # a file that matches its checksum but does not parse: written damaged
            raise CheckpointError(f"{folder} is damaged: {err!r}") from err
        return Checkpoint(step, weights, state, folder)

    def latest(self) -> Checkpoint | None:
        """The checkpoint ``latest`` points at; when it (or the pointer) is damaged, the newest intact one,
        with a warning. ``None`` for a run without checkpoints; :class:`CheckpointError` if none is intact."""
        steps = self.checkpoint_steps()
        pointer = self.ckpt_dir / "latest"
        order = steps[::-1]
        if pointer.exists():
            text = pointer.read_text().strip()
            tail = text.split("-", 1)[1] if text.startswith("step-") else ""
            if tail.isdigit() and int(tail) in steps:
                order = [int(tail), *(s for s in order if s != int(tail))]
            else:
                warnings.warn(f"{pointer} reads {text[:40]!r}, not a kept checkpoint; using the newest intact one",
                              stacklevel=2)
        elif steps:
            warnings.warn(f"{pointer} is missing; using the newest intact checkpoint", stacklevel=2)
        errors = []
        for s in order:
            try:
                ckpt = self.load(s)
            except CheckpointError as err:
                errors.append(str(err))
                continue
            if errors:
                warnings.warn(f"{'; '.join(errors)}: resuming from the intact checkpoint at step {s}", stacklevel=2)
            return ckpt
        if errors:
            raise CheckpointError(f"{self.path} has no intact checkpoint: {'; '.join(errors)}")
        return None

    def export(self, out: str | Path | None = None) -> tuple[Checkpoint, Path]:
        """Copy the model and tokenizer of the latest intact checkpoint to ``out`` (default ``<run>/export``),
        a plain Hugging Face folder without the trainer's state; ``out`` must be new or empty."""
        ckpt = self.latest()
        if ckpt is None:
            raise FileNotFoundError(f"{self.path} holds no checkpoint yet; export it after its first checkpoint")
        if not ckpt.is_model:
            raise ConfigError(f"{ckpt.folder} holds {WEIGHTS} (a gym run), not a Hugging Face model: nothing to export")
        dest = Path(out) if out is not None else self.path / "export"
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise FileExistsError(f"{dest} exists and is not an empty folder; pass another --out or remove it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        for f in ckpt.folder.iterdir():
            if f.name not in (*STATE_FILES, "manifest.json"):
                shutil.copy2(f, tmp / f.name)
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
        return ckpt, dest

    def resume_point(self) -> Checkpoint | None:
        """The checkpoint to continue from, with the metrics log cut back to its step; ``None`` (log cleared,
        with a warning) for a run that stopped before its first checkpoint, which then starts from scratch.

        Removes the ``.tmp-*`` folders of interrupted saves first (only a run that starts again may: a
        reader such as ``ratiolab report`` could run beside a live run).
        """
        for tmp in self.ckpt_dir.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        ckpt = self.latest()
        if ckpt is None:
            warnings.warn(f"{self.path} holds no checkpoint (the run stopped before its first one): starting it "
                          "from scratch with its stored config", stacklevel=2)
        self.truncate_metrics(-1 if ckpt is None else ckpt.step)
        return ckpt
