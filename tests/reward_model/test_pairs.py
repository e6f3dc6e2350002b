"""Preference pairs from the text tasks: labels, label noise, the file schema and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratiolab import tasks
from ratiolab.reward_model import PreferencePair, generate_pairs, read_pairs, write_pairs

ARITH = tasks.get("arithmetic")


def test_chosen_is_verifier_correct_and_rejected_a_near_miss() -> None:
    pairs = generate_pairs(ARITH, 300, seed=1)
    problems = ARITH.sample(300, seed=1)
    assert [p.prompt for p in pairs] == [q.prompt for q in problems]
    for pair, problem in zip(pairs, problems, strict=True):
        assert ARITH.reward(problem, pair.chosen) == 1.0
        assert ARITH.reward(problem, pair.rejected) == 0.0
        assert 0 < abs(int(pair.rejected) - int(pair.chosen)) <= 10
    assert generate_pairs(ARITH, 300, seed=1) == pairs  # seeded


@pytest.mark.parametrize("noise", [0.0, 0.25, 1.0])
def test_label_noise_flips_that_share_of_pairs(noise: float) -> None:
    n = 2000
    pairs = generate_pairs(ARITH, n, seed=0, label_noise=noise)
    flipped = sum(ARITH.reward(q, p.chosen) < 1.0 for p, q in zip(pairs, ARITH.sample(n, seed=0), strict=True))
    assert abs(flipped / n - noise) < 0.03  # binomial sd at 0.25: 0.0097


def test_other_tasks_make_pairs_and_multi_turn_is_refused() -> None:
    countdown = tasks.get("countdown")
    for pair, problem in zip(generate_pairs(countdown, 20), countdown.sample(20), strict=True):
        assert countdown.reward(problem, pair.chosen) == 1.0 and countdown.reward(problem, pair.rejected) < 1.0
    with pytest.raises(ValueError, match="multi-turn"):
        generate_pairs(tasks.get("guess"), 4)
    with pytest.raises(ValueError, match="label_noise"):
        generate_pairs(ARITH, 4, label_noise=1.5)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    pairs = generate_pairs(ARITH, 50, label_noise=0.3)
    path = write_pairs(tmp_path / f"pairs{suffix}", pairs)
    assert read_pairs(path) == pairs
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"pairs{suffix}"]  # no temporary file left


@pytest.mark.parametrize(("row", "match"), [
    ({"prompt": "1+1=", "chosen": "2"}, r"row 1 has no field\(s\) \['rejected'\]"),
    ({"prompt": "1+1=", "chosen": "2", "rejected": "3", "score": 1}, r"field\(s\) \['score'\] beyond"),
    ({"prompt": "1+1=", "chosen": 2, "rejected": "3"}, "field 'chosen' is 2, not a string"),
    ({"prompt": "1+1=", "chosen": "2", "rejected": ""}, "field 'rejected' is empty"),
    ({"prompt": "1+1=", "chosen": "2", "rejected": "2"}, "chosen and rejected are equal"),
])
def test_bad_rows_are_one_line_errors(tmp_path: Path, row: dict, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"prompt": "2+2=", "chosen": "4", "rejected": "5"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=match) as err:
        read_pairs(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.jsonl or \.parquet"):
        read_pairs(tmp_path / "pairs.csv")
    with pytest.raises(ValueError, match="does not exist"):
        read_pairs(tmp_path / "missing.jsonl")
    (tmp_path / "cut.parquet").write_bytes(b"PAR1\x00\x01")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        read_pairs(tmp_path / "cut.parquet")
    with pytest.raises(ValueError, match="no pairs to write"):
        write_pairs(tmp_path / "empty.jsonl", [])
    assert not (tmp_path / "empty.jsonl").exists()
    assert PreferencePair("a", "b", "c").chosen == "b"
