"""The jsonl task reads JSONL, JSON, parquet and ``Dataset.save_to_disk`` folders, with the column names as
options; every bad file is a one-line error naming the file (and the column, and the columns there are)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ratiolab import tasks
from ratiolab.config import ConfigError, override
from ratiolab.learner import TrainConfig
from ratiolab.tasks.jsonl import ChatPrompt

ROWS = [{"problem": f"What is {i} times 3?", "solution": f"{i}*3={3 * i}\n#### {3 * i}", "id": i} for i in range(30)]


def write(tmp: Path, kind: str, rows: list[dict[str, object]] = ROWS) -> Path:
    """``rows`` as a file (or folder) of ``kind``."""
    if kind == "jsonl":
        (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return tmp / "d.jsonl"
    if kind == "json":
        (tmp / "d.json").write_text(json.dumps(rows, indent=1))
        return tmp / "d.json"
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({"problem": pa.array([], pa.string())}),
                       tmp / "d.parquet")
        return tmp / "d.parquet"
    data = datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({"problem": []})
    data.save_to_disk(str(tmp / "saved"))
    return tmp / "saved"


KINDS = ("jsonl", "json", "parquet", "disk")


@pytest.mark.parametrize("kind", KINDS)
def test_every_format_gives_the_same_problems(kind: str, tmp_path: Path) -> None:
    task = tasks.get("jsonl", path=write(tmp_path, kind), question="problem", answer="solution", test_fraction=0.3)
    reference = tasks.get("jsonl", path=write(tmp_path, "jsonl"), question="problem", answer="solution",
                          test_fraction=0.3)
    for split in ("train", "test"):
        assert task.sample(12, split, seed=4) == reference.sample(12, split, seed=4)
    train, test = task.problems["train"], task.problems["test"]
    assert len(train) + len(test) == 30 and train and test
    p = next(p for p in train + test if p.prompt == "What is 7 times 3?\n")
    assert p.answer == "21" and task.reward(p, "7*3=21 #### 21") == 1.0 and task.reward(p, "#### 22") == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_missing_column_names_file_column_and_columns(kind: str, tmp_path: Path) -> None:
    path = write(tmp_path, kind)
    with pytest.raises(ValueError) as err:
        tasks.get("jsonl", path=path, question="problem", answer="answer")
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "no column 'answer' (task.params.answer); available columns: ['problem', 'solution', 'id']" in message


@pytest.mark.parametrize("kind", KINDS)
def test_empty_file(kind: str, tmp_path: Path) -> None:
    path = write(tmp_path, kind, rows=[])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} holds no rows; give a file with at least one"):
        tasks.get("jsonl", path=path)


def test_truncated_parquet_and_other_unreadable_files(tmp_path: Path) -> None:
    path = write(tmp_path, "parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} is not a readable parquet file \(Arrow.*\); it "
                                         "may be truncated"):
        tasks.get("jsonl", path=path)
    (tmp_path / "x.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match=r"x\.parquet is not a readable parquet file"):
        tasks.get("jsonl", path=tmp_path / "x.parquet")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=r"folder is not a folder written by Dataset.save_to_disk \("):
        tasks.get("jsonl", path=tmp_path / "folder")
    (tmp_path / "bad.jsonl").write_text('{"question": "a", "answer": "1"}\n{"question": \n')
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2 is not valid JSON"):
        tasks.get("jsonl", path=tmp_path / "bad.jsonl")
    (tmp_path / "list.jsonl").write_text('[1, 2]')
    with pytest.raises(ValueError, match=r"list\.jsonl: row 0 is a int, not an object"):
        tasks.get("jsonl", path=tmp_path / "list.jsonl")
    (tmp_path / "d.csv").write_text("question,answer\n")
    with pytest.raises(ValueError, match=r"d\.csv' has an unknown suffix; give a \.jsonl, \.json or \.parquet"):
        tasks.get("jsonl", path=tmp_path / "d.csv")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match=r"holds a DatasetDict with splits \['train'\]; point path at one split"):
        tasks.get("jsonl", path=tmp_path / "dd")


def test_columns_from_the_command_line_and_their_errors(tmp_path: Path) -> None:
    """``--set task.params={path: X, question: q, answer: a}`` as the CLI passes it: a bad column is a
    one-line ``ConfigError`` when the config is checked, before any run starts."""
    path = write(tmp_path, "parquet")
    base = ["task.name=jsonl"]
    good = override(TrainConfig(), [*base, f"task.params={{path: {path}, question: problem, answer: solution}}"])
    good.validate()
    bad = override(TrainConfig(), [*base, f"task.params={{path: {path}, question: prompt, answer: solution}}"])
    with pytest.raises(ConfigError, match=r"no column 'prompt' \(task\.params\.question\); available columns: "
                                          r"\['problem', 'solution', 'id'\]"):
        bad.validate()


def test_chat_prompts_keep_the_text_and_survive_pickling(tmp_path: Path) -> None:
    task = tasks.get("jsonl", path=write(tmp_path, "json"), question="problem", answer="solution",
                     chat_template=True, system="Be brief.")
    prompt = task.sample(1, "test")[0].prompt
    assert isinstance(prompt, ChatPrompt) and prompt.endswith("times 3?\n")
    assert prompt.messages() == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
    back = pickle.loads(pickle.dumps(prompt))
    assert isinstance(back, ChatPrompt) and back == prompt and back.system == "Be brief."
    assert ChatPrompt("hi").messages() == [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="system is set but chat_template is false"):
        tasks.get("jsonl", path=write(tmp_path, "json"), question="problem", answer="solution", system="x")
