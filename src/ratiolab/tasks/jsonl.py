"""Prompts and answers from a local JSONL file or a local ``datasets`` folder, verified by rule.

The reward follows the GSM8K convention: the reference answer is the number after the last
``####`` of the answer field (or its last number); a completion is correct iff its own final
number (after ``####`` when present, else the last number in the text) equals it.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from ratiolab.tasks.base import Problem, Split, Task, check_split, split_of

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> float | None:
    """The number after the last ``####`` if present, else the last number in ``text``; commas ignored."""
    tail = text.rsplit("####", 1)[1] if "####" in text else text
    numbers = _NUMBER.findall(tail)
    if not numbers:
        return None
    pick = numbers[0] if "####" in text else numbers[-1]
    return float(pick.replace(",", "").rstrip("."))


class JsonlTask(Task):
    """Rows ``{prompt_field: ..., answer_field: ...}``; prompts rendered with ``template``.

    ``path`` is a ``.json``/``.jsonl`` file (read with ``datasets.load_dataset("json")``) or a
    folder written by ``Dataset.save_to_disk`` (read with ``datasets.load_from_disk``). Rows are
    split by a hash of the prompt, so splits are disjoint and fixed by ``split_seed``.
    """

    name = "jsonl"
    long_answers = True

    def __init__(
        self,
        path: str | Path,
        prompt_field: str = "question",
        answer_field: str = "answer",
        template: str = "{prompt}\n",
        test_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction={test_fraction} must lie in (0, 1)")
        rows = _load_rows(Path(path))
        self.problems: dict[Split, list[Problem]] = {"train": [], "test": []}
        for i, row in enumerate(rows):
            missing = [f for f in (prompt_field, answer_field) if f not in row]
            if missing:
                raise ValueError(f"row {i} of {path} lacks {missing}; fix prompt_field/answer_field")
            answer_text = str(row[answer_field])
            gold = final_number(answer_text)
            if gold is None:
                raise ValueError(f"row {i} of {path}: answer {answer_text!r} contains no number")
            prompt = template.format(prompt=row[prompt_field])
            problem = Problem(prompt=prompt, answer=_format_number(gold), meta={"solution": answer_text})
            self.problems[split_of(prompt, split_seed, test_fraction)].append(problem)

    def sample(self, n: int, split: Split = "train", seed: int = 0) -> list[Problem]:
        """The first ``n`` problems of ``split`` after a seeded shuffle (cycling if ``n`` exceeds it)."""
        pool = list(self.problems[check_split(split)])
        if not pool:
            raise ValueError(f"split {split!r} is empty; add rows or change test_fraction")
        random.Random(seed).shuffle(pool)
        return [pool[i % len(pool)] for i in range(n)]

    def reward(self, problem: Problem, completion: str) -> float:
        value = final_number(completion)
        return float(value is not None and abs(value - float(problem.answer)) < 1e-6)

    def demonstration(self, problem: Problem) -> str:
        solution = problem.meta["solution"]
        assert isinstance(solution, str)
        return solution


def _format_number(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


def _load_rows(path: Path) -> list[dict[str, object]]:
    import datasets

    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            raise ValueError(f"{path} holds a DatasetDict; point path at one split's folder")
        return [dict(row) for row in loaded]
    if path.is_file() and path.suffix in (".json", ".jsonl"):
        loaded = datasets.load_dataset("json", data_files=str(path), split="train")
        return [dict(row) for row in loaded]
    raise ValueError(f"path={str(path)!r} is neither a .json/.jsonl file nor a saved datasets folder")
