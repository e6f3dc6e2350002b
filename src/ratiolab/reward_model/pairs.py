"""Preference pairs from the verifiable text tasks, and their validated file format.

A pair is a prompt with two responses, ``chosen`` (preferred) and ``rejected``. ``generate_pairs`` takes the
task's demonstration as the chosen response (the verifier scores it 1) and a near miss the verifier rejects as
the rejected one: an integer answer moved by a non-zero offset in [-10, 10], any other demonstration with one
digit changed (or a character appended when it has none). ``label_noise`` is the probability that a pair's
labels are swapped, so that a reward model trained on the pairs is imperfect and can be over-optimised.

Files: ``.jsonl`` (one object per line) or ``.parquet``, with exactly the string fields ``prompt``, ``chosen``
and ``rejected``; ``chosen`` and ``rejected`` non-empty and different. A file that breaks the schema is a
one-line ``ValueError`` naming the file, the row and the field; a write goes to a temporary file renamed into
place, so no half-written file is left.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ratiolab.tasks import Problem, Split, Task
from ratiolab.tasks.arithmetic import INTEGER
from ratiolab.tasks.jsonl import load_rows

FIELDS = ("prompt", "chosen", "rejected")
SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True)
class PreferencePair:
    """One prompt and two responses to it; ``chosen`` is the preferred one (by the labels, noisy or not)."""

    prompt: str
    chosen: str
    rejected: str


def near_miss(task: Task, problem: Problem, rng: random.Random, tries: int = 32) -> str:
    """A response close to the demonstration that the task's verifier scores below 1 (module docstring)."""
    demo = task.demonstration(problem)
    for _ in range(tries):
        if INTEGER.fullmatch(demo.strip()):
            wrong = str(int(demo) + rng.choice([d for d in range(-10, 11) if d]))
        else:
            digits = [i for i, c in enumerate(demo) if c.isdigit()]
            if digits:
                i = rng.choice(digits)
                wrong = demo[:i] + rng.choice([d for d in "0123456789" if d != demo[i]]) + demo[i + 1:]
            else:
                wrong = demo + rng.choice("0123456789")
        if task.reward(problem, wrong) < 1.0:
            return wrong
    raise ValueError(f"task {task.name!r}: no wrong response near the demonstration {demo!r} of prompt "
                     f"{problem.prompt!r} in {tries} tries; this task cannot make preference pairs")


def generate_pairs(task: Task, n: int, split: Split = "train", seed: int = 0, label_noise: float = 0.0) -> list[
        PreferencePair]:
    """``n`` pairs from problems of ``split`` (seeded): chosen = the demonstration, rejected = a near miss,
    the two swapped with probability ``label_noise``."""
    if task.multi_turn:
        raise ValueError(f"task {task.name!r} is multi-turn; preference pairs come from single-turn tasks")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise = {label_noise} must be in [0, 1] (the probability a pair's labels flip)")
    rng = random.Random(f"pairs:{task.name}:{split}:{seed}")
    out = []
    for problem in task.sample(n, split=split, seed=seed):
        good, bad = task.demonstration(problem), near_miss(task, problem, rng)
        if rng.random() < label_noise:
            good, bad = bad, good
        out.append(PreferencePair(str(problem.prompt), good, bad))
    return out


def write_pairs(path: str | Path, pairs: list[PreferencePair]) -> Path:
    """Write ``pairs`` to ``path`` (``.jsonl`` or ``.parquet``) atomically; returns the path."""
    path = Path(path)
    _check_suffix(path)
    if not pairs:
        raise ValueError(f"no pairs to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        rows = [asdict(p) for p in pairs]
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp)
        else:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """The pairs of a ``.jsonl`` or ``.parquet`` file, each row checked against the schema (module docstring)."""
    path = Path(path)
    _check_suffix(path)
    rows = load_rows(path, {})
    out = []
    for i, row in enumerate(rows):
        where = f"{path} row {i}"
        missing = [name for name in FIELDS if name not in row]
        if missing:
            raise ValueError(f"{where} has no field(s) {missing}; every row needs {list(FIELDS)}")
        extra = sorted(set(row) - set(FIELDS))
        if extra:
            raise ValueError(f"{where} has field(s) {extra} beyond {list(FIELDS)}; a pair file holds exactly those")
        for name in FIELDS:
            if not isinstance(row[name], str):
                raise ValueError(f"{where}: field {name!r} is {row[name]!r}, not a string; every row needs the "
                                 f"string fields {list(FIELDS)}")
        if not row["chosen"] or not row["rejected"]:
            empty = "chosen" if not row["chosen"] else "rejected"
            raise ValueError(f"{where}: field {empty!r} is empty; each pair needs two non-empty responses")
        if row["chosen"] == row["rejected"]:
            raise ValueError(f"{where}: chosen and rejected are equal ({row['chosen']!r}); a pair must differ")
        out.append(PreferencePair(str(row["prompt"]), str(row["chosen"]), str(row["rejected"])))
    return out


def _check_suffix(path: Path) -> None:
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: a pair file must end in {' or '.join(SUFFIXES)}")
