"""Prompts and answers from a local JSONL, JSON, parquet file or ``datasets`` folder, verified by rule.

The reward follows the GSM8K convention: the reference answer is the number after the last
``####`` of the answer column (or its last number); a completion is correct iff its own final
number (after ``####`` when present, else the last number in the text) equals it.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ratiolab.tasks.base import Problem, Split, Task, check_split, split_of

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_JSON = (".json", ".jsonl")


def final_number(text: str) -> float | None:
    """The number after the last ``####`` if present, else the last number in ``text``; commas ignored."""
    tail = text.rsplit("####", 1)[1] if "####" in text else text
    numbers = _NUMBER.findall(tail)
    if not numbers:
        return None
    pick = numbers[0] if "####" in text else numbers[-1]
    return float(pick.replace(",", "").rstrip("."))


class ChatPrompt(str):
    """A prompt the engine renders with the policy tokenizer's chat template (``apply_chat_template`` with the
    generation prompt, then encoded without extra special tokens); the string itself is the user message,
    so rewards, splits and logs see the plain text. ``system``: an optional system message before it."""

    system: str | None

    def __new__(cls, content: str, system: str | None = None) -> ChatPrompt:
        prompt = super().__new__(cls, content)
        prompt.system = system
        return prompt

    def messages(self) -> list[dict[str, str]]:
        """The conversation to render: ``[system,] user``."""
        system = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*system, {"role": "user", "content": str(self)}]


class JsonlTask(Task):
    """Rows with a question column and an answer column; prompts rendered with ``template``.

    ``path``: a ``.jsonl`` file (one JSON object per line), a ``.json`` file (a list of objects, or one
    object per line), a ``.parquet`` file (read with pyarrow) or a folder written by
    ``Dataset.save_to_disk`` (read with ``datasets.load_from_disk``). ``question``/``answer`` name the
    columns (``--set task.params={path: data.parquet, question: problem, answer: solution}``).
    ``chat_template``: prompts become :class:`ChatPrompt` -- the engine renders each as a one-turn chat
    (``system`` first when given) with the tokenizer's ``chat_template``, which the policy's tokenizer must
    then have; without it the prompt string is encoded as is, with the tokenizer's special tokens.
    Rows are split by a hash of the prompt, so splits are disjoint and fixed by ``split_seed``.
    """

    name = "jsonl"
    long_answers = True

    def __init__(
        self,
        path: str | Path,
        question: str = "question",
        answer: str = "answer",
        template: str = "{prompt}\n",
        test_fraction: float = 0.2,
        split_seed: int = 0,
        chat_template: bool = False,
        system: str | None = None,
    ) -> None:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction={test_fraction} must lie in (0, 1)")
        if system is not None and not chat_template:
            raise ValueError("system is set but chat_template is false; set task.params.chat_template=true")
        path = Path(path)
        rows = load_rows(path, {"question": question, "answer": answer})
        self.problems: dict[Split, list[Problem]] = {"train": [], "test": []}
        for i, row in enumerate(rows):
            answer_text = str(row[answer])
            gold = final_number(answer_text)
            if gold is None:
                raise ValueError(f"row {i} of {path}: answer {answer_text!r} (column {answer!r}) contains no number")
            text = template.format(prompt=row[question])
            prompt = ChatPrompt(text, system) if chat_template else text
            problem = Problem(prompt=prompt, answer=_format_number(gold), meta={"solution": answer_text})
            self.problems[split_of(text, split_seed, test_fraction)].append(problem)

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


def load_rows(path: Path, columns: dict[str, str]) -> list[dict[str, object]]:
    """The rows of ``path`` (JSONL/JSON, parquet or a ``save_to_disk`` folder), each holding the columns
    ``columns`` maps parameter names to. A missing file or column, no rows or an unreadable file is a
    one-line ``ValueError`` naming the file (and the column, the parameter and the columns there are)."""
    if path.is_dir():
        rows = _from_disk(path)
    elif path.is_file() and path.suffix == ".parquet":
        rows = _parquet(path)
    elif path.is_file() and path.suffix in _JSON:
        rows = _json_rows(path)
    else:
        what = "does not exist" if not path.exists() else "has an unknown suffix"
        raise ValueError(f"path={str(path)!r} {what}; give a .jsonl, .json or .parquet file or a folder written by "
                         "Dataset.save_to_disk")
    if not rows:
        raise ValueError(f"{path} holds no rows; give a file with at least one question and answer")
    for i, row in enumerate(rows):  # a table's rows all have its columns; JSON rows each their own
        for param, column in columns.items():
            if column not in row:
                where = f"row {i} of {path}" if path.suffix in _JSON else str(path)
                raise ValueError(f"{where} has no column {column!r} (task.params.{param}); "
                                 f"available columns: {list(row)}")
    return rows


def _json_rows(path: Path) -> list[dict[str, object]]:
    """A JSON list of objects, or one JSON object per non-empty line."""
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text) if text.lstrip().startswith("[") else None
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); give a list of objects or one object per line") from err
    lines = whole if whole is not None else []
    if whole is None:
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except ValueError as err:
                    raise ValueError(f"{path} line {n} is not valid JSON ({err}); write one object per line") from err
    for n, row in enumerate(lines):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {n} is a {type(row).__name__}, not an object with named columns")
    return lines


def _parquet(path: Path) -> list[dict[str, object]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path} is not a readable parquet file ({first_line(err)}); it may be truncated, "
                         "write it again") from err
    rows: list[dict[str, object]] = table.to_pylist()
    return rows


def _from_disk(path: Path) -> list[dict[str, object]]:
    import datasets

    try:  # a dataset saved with no rows has no data files, and datasets fails to load it
        if json.loads((path / "state.json").read_text()).get("_data_files") == []:
            return []
    except (OSError, ValueError, AttributeError):
        pass  # not a saved dataset: load_from_disk says so below
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise ValueError(f"{path} is not a folder written by Dataset.save_to_disk ({first_line(err)})") from err
    if isinstance(loaded, datasets.DatasetDict):
        raise ValueError(f"{path} holds a DatasetDict with splits {list(loaded)}; point path at one split's folder")
    return [dict(row) for row in loaded]


def first_line(err: BaseException) -> str:
    """``Type: first line of the message``: an exception from a library, fit for a one-line error."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"
