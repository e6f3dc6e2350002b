"""The run directory (DESIGN §3): ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``report.html``.

Checkpoints are written atomically: everything goes to a temporary folder that is renamed
into place, and the ``latest`` pointer is replaced with ``os.replace``, so a crash at any
moment leaves the previous checkpoint intact. On resume the metrics log is cut back to the
checkpoint's step, so no step is logged twice.

A checkpoint holds ``weights.safetensors`` (tensors by name), and ``state.pt`` with the
optimiser, RNG states, objective state and anything else the trainer needs (``torch.save``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """The RNG states of python, numpy and torch (CPU)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


@dataclass(frozen=True)
class Checkpoint:
    step: int
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]


class RunDir:
    """One run's folder. Create it with :meth:`create` (fresh) or :meth:`open` (resume)."""

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ckpt_dir = path / "checkpoints"

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        """A fresh run folder with ``config.yaml``; refuses a folder that already holds a run."""
        p = Path(path)
        if (p / cls.CONFIG).exists():
            raise FileExistsError(f"{p} already holds a run; pass --resume {p} or choose another --run-dir")
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

    # metrics -----------------------------------------------------------------------------------
    def log(self, row: dict[str, Any]) -> None:
        """Append one step's metrics as a JSON line."""
        with open(self.path / self.METRICS, "a") as f:
            f.write(json.dumps(row, default=float) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        p = self.path / self.METRICS
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """Drop logged rows with ``row["step"] > step`` (rows written after the checkpoint)."""
        rows = [r for r in self.metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.path / self.METRICS, "".join(json.dumps(r) + "\n" for r in rows))

    # checkpoints -------------------------------------------------------------------------------
    def save(self, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], keep: int = 2) -> Path:
        """Write checkpoint ``step`` atomically, point ``latest`` at it, keep the newest ``keep``."""
        final = self.ckpt_dir / f"step-{step:08d}"
        tmp = Path(tempfile.mkdtemp(dir=self.ckpt_dir, prefix=".tmp-"))
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
        torch.save(state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(self.ckpt_dir / "latest", final.name)
        for old in sorted(self.ckpt_dir.glob("step-*"))[:-keep]:
            shutil.rmtree(old)
        return final

    def checkpoint_steps(self) -> list[int]:
        """Steps of the kept checkpoints, oldest first."""
        return sorted(int(p.name.split("-")[1]) for p in self.ckpt_dir.glob("step-*") if p.is_dir())

    def load(self, step: int) -> Checkpoint:
        """Checkpoint ``step``; a step that is not kept raises ``ValueError`` listing the kept ones."""
        folder = self.ckpt_dir / f"step-{step:08d}"
        if not folder.is_dir():
            raise ValueError(
                f"step: {self.path} keeps no checkpoint at step {step}; kept steps: {self.checkpoint_steps()}"
            )
        weights = load_file(str(folder / "weights.safetensors"))
        state = torch.load(folder / "state.pt", weights_only=False)
        return Checkpoint(step, weights, state)

    def latest(self) -> Checkpoint | None:
        pointer = self.ckpt_dir / "latest"
        if not pointer.exists():
            return None
        return self.load(int(pointer.read_text().strip().split("-")[1]))
