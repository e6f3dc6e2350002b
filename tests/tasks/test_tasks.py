from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from ratiolab import tasks
from ratiolab.tasks import Problem
from ratiolab.tasks.expression import parse
from ratiolab.tasks.jsonl import final_number

PROCEDURAL = [
    *(("arithmetic", {"level": level}) for level in (1, 3, 4, 5)),
    ("countdown", {}),
    ("guess", {"max_value": 31, "test_fraction": 0.3}),
]


def test_registry_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="arithmetic, countdown, guess, jsonl"):
        tasks.get("nope")


@pytest.mark.parametrize(("name", "params"), PROCEDURAL)
def test_splits_disjoint_reproducible_and_demonstrations_verify(name: str, params: dict[str, int]) -> None:
    task = tasks.get(name, **params)
    train = task.sample(300, "train", seed=1)
    test = task.sample(5, "test", seed=1)
    key = task.split_key  # type: ignore[attr-defined]
    assert not {key(p) for p in train} & {key(p) for p in test}
    assert task.sample(300, "train", seed=1) == train
    assert task.sample(300, "train", seed=2) != train
    for p in train[:50] + test:
        assert task.reward(p, task.demonstration(p)) == 1.0


def test_split_argument_checked() -> None:
    with pytest.raises(ValueError, match="split='val'"):
        tasks.get("arithmetic").sample(3, "val")  # type: ignore[arg-type]


def test_arithmetic_answers_follow_precedence_and_reward_is_exact() -> None:
    task = tasks.get("arithmetic", level=6)
    for p in task.sample(200, seed=3):
        expr = p.prompt[:-1]
        assert int(p.answer) == parse(expr).value
    p = Problem(prompt="12+7=", answer="19")
    assert task.reward(p, " 19 ") == 1.0
    assert task.reward(p, "19.") == 0.0
    assert task.reward(p, "18") == 0.0


def test_arithmetic_bad_level() -> None:
    with pytest.raises(ValueError, match="level=9"):
        tasks.get("arithmetic", level=9)


def test_expression_parser() -> None:
    assert parse("3*(5+7)/4-1").value == Fraction(8)
    assert parse("7/2").value == Fraction(7, 2)
    assert parse("2*3+4").numbers == (2, 3, 4)
    for bad in ("1/0", "2+", "(1+2", "1+2)", "__import__('os')", "1e3", "-1"):
        with pytest.raises(ValueError):
            parse(bad)


def test_countdown_verifier() -> None:
    p = Problem(prompt="3 5 7>22:", answer="3*5+7", meta={"numbers": (3, 5, 7), "target": 22})
    task = tasks.get("countdown")
    assert task.reward(p, "3*5+7") == 1.0
    assert task.reward(p, "7+(5*3)") == 1.0
    assert task.reward(p, "3*5+7+0") == 0.0  # 0 not given
    assert task.reward(p, "7+7+5+3") == 0.0  # 7 used twice
    assert task.reward(p, "3*5+8") == 0.0
    assert task.reward(p, "3*5+7)") == 0.0
    assert task.reward(p, "import os") == 0.0


def test_guess_environment_and_reward() -> None:
    task = tasks.get("guess", max_value=15, max_turns=4)
    assert isinstance(task, tasks.MultiTurnTask)
    p = Problem(prompt="guess 1-15:", answer="10", meta={"secret": 10})
    assert task.env_reply(p, ["8?"]) == (" higher\n", False)
    assert task.env_reply(p, ["8?", "12?"]) == (" lower\n", False)
    assert task.env_reply(p, ["8?", "12?", "10?"]) == (" correct", True)
    assert task.env_reply(p, ["1?", "2?", "3?", "4?"]) == (" higher\n", True)
    assert task.demonstration(p) == "8? higher\n12? lower\n10? correct"
    assert task.reward(p, "8? higher\n12? lower\n10? correct") == 1.0
    assert task.reward(p, "1? higher\n2? higher\n3? higher\n4? higher\n10? correct") == 0.0  # too late
    assert task.reward(p, "8? higher\n12?") == 0.0


def test_final_number_conventions() -> None:
    assert final_number("so 3 + 4 = 7\n#### 1,234") == 1234.0
    assert final_number("the answer is 42.") == 42.0
    assert final_number("-3 then 2.5") == 2.5
    assert final_number("none") is None


def _write_rows(path: Path, n: int) -> None:
    rows = [{"question": f"What is {i}+{i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows))


def test_jsonl_file_and_datasets_folder(tmp_path: Path) -> None:
    import datasets

    path = tmp_path / "data.jsonl"
    _write_rows(path, 40)
    task = tasks.get("jsonl", path=path, test_fraction=0.25)
    train, test = task.sample(1000, "train"), task.sample(1000, "test")
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    assert len({p.prompt for p in train}) + len({p.prompt for p in test}) == 40
    p = test[0]
    assert task.reward(p, task.demonstration(p)) == 1.0
    assert task.reward(p, f"I think {int(p.answer) + 1}") == 0.0
    assert task.reward(p, f"I think {p.answer}") == 1.0

    folder = tmp_path / "saved"
    datasets.load_dataset("json", data_files=str(path), split="train").save_to_disk(str(folder))
    from_disk = tasks.get("jsonl", path=folder, test_fraction=0.25)
    assert from_disk.sample(5, "test", seed=3) == task.sample(5, "test", seed=3)


def test_jsonl_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        tasks.get("jsonl", path=tmp_path / "missing.csv")
    path = tmp_path / "data.jsonl"
    _write_rows(path, 3)
    with pytest.raises(ValueError, match=r"no column 'q' \(task\.params\.question\)"):
        tasks.get("jsonl", path=path, question="q")


def test_guess_can_hold_out_episodes_instead_of_secrets() -> None:
    secrets = tasks.get("guess", max_value=15)
    # split_seed 0 holds out secrets 3 7 9 11: no test episode's secret is ever a training secret
    test = {p.answer for p in secrets.sample(200, "test", seed=0)}
    assert test == {"3", "7", "9", "11"} and not test & {p.answer for p in secrets.sample(200, "train", seed=0)}
    episodes = tasks.get("guess", max_value=15, held_out="episodes")
    held = episodes.sample(200, "test", seed=0)
    assert {p.answer for p in held} == {str(s) for s in range(1, 16)}  # every secret in the held-out split
    assert len({p.meta["episode"] for p in held}) == 200  # distinct episodes
    assert [p.answer for p in secrets.sample(5, "train", seed=0)] == ["12", "10", "13", "1", "2"]  # default unchanged
    with pytest.raises(ValueError, match="held_out='numbers'"):
        tasks.get("guess", held_out="numbers")


def test_guess_teacher_noise_mixes_linear_searches_into_the_demonstrations() -> None:
    p = Problem(prompt="guess 1-15:", answer="3", meta={"secret": 3})
    assert tasks.get("guess", max_value=15, teacher_noise=1.0).demonstration(p) == "1? higher\n2? higher\n3? correct"
    assert tasks.get("guess", max_value=15).demonstration(p) == "8? lower\n4? lower\n2? higher\n3? correct"
    late = Problem(prompt="guess 1-15:", answer="9", meta={"secret": 9})  # a linear search runs out of turns
    linear = tasks.get("guess", max_value=15, max_turns=4, teacher_noise=1.0)
    assert linear.reward(late, linear.demonstration(late)) == 0.0
    noisy = tasks.get("guess", max_value=15, max_turns=4, held_out="episodes", teacher_noise=0.6)
    demos = [noisy.demonstration(q) for q in noisy.sample(1000, "train", seed=0)]
    assert 0.55 < sum(d.startswith("1?") for d in demos) / 1000 < 0.65  # ~60 % linear (binary starts "8?")
    assert demos == [noisy.demonstration(q) for q in noisy.sample(1000, "train", seed=0)]  # fixed per problem
    with pytest.raises(ValueError, match=r"teacher_noise=1\.5"):
        tasks.get("guess", teacher_noise=1.5)
