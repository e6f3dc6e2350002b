"""Transition datasets: round trip, checksum manifest, atomic write, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ratiolab.offline.dataset import (
    DATA_FILE,
    MANIFEST,
    DatasetError,
    DatasetMeta,
    TransitionDataset,
    read_dataset,
    write_dataset,
)
from ratiolab.runs import sha256_file


def _data(n: int = 6, discrete: bool = False) -> TransitionDataset:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    actions = rng.integers(0, 2, n) if discrete else rng.uniform(-2, 2, (n, 1)).astype(np.float32)
    return TransitionDataset(
        observations=obs[:-1], actions=actions, rewards=np.arange(n, dtype=np.float32),
        next_observations=obs[1:], terminals=np.array([False, False, True, False, False, False][:n]),
        truncations=np.array([False] * (n - 1) + [True]), episode_ids=np.array([0, 0, 0, 1, 1, 1][:n]),
        behav_logp=np.full(n, -1.5, np.float32),
        meta=DatasetMeta(env_id="Pendulum-v1", policy="random", seeds=[3], steps=n, discrete=discrete,
                         ref_returns={"random": -1200.0}),
    )


@pytest.mark.parametrize("discrete", [False, True])
def test_round_trip_and_manifest(tmp_path: Path, discrete: bool) -> None:
    d = _data(discrete=discrete)
    out = write_dataset(d, tmp_path / "ds")
    back = read_dataset(out)
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "truncations",
                 "episode_ids", "behav_logp"):
        np.testing.assert_array_equal(getattr(back, name), getattr(d, name))
    assert back.meta == d.meta
    doc = json.loads((out / MANIFEST).read_text())
    assert doc["sha256"] == sha256_file(out / DATA_FILE) and doc["rows"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left
    # episode 0 ends at row 2 (terminal, 0+1+2), episode 1 at row 5 (truncated, 3+4+5)
    np.testing.assert_array_equal(back.episode_returns(), [3.0, 12.0])


def test_existing_folder_is_refused_unless_overwrite(tmp_path: Path) -> None:
    write_dataset(_data(), tmp_path / "ds")
    with pytest.raises(DatasetError, match="already exists"):
        write_dataset(_data(), tmp_path / "ds")
    write_dataset(_data(4), tmp_path / "ds", overwrite=True)
    assert len(read_dataset(tmp_path / "ds")) == 4


def test_nan_reward_is_refused_on_write_and_nothing_is_written(tmp_path: Path) -> None:
    d = _data()
    d.rewards[4] = np.nan
    with pytest.raises(DatasetError, match=r"column 'rewards' holds NaN .*row 4"):
        write_dataset(d, tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    d = _data()
    d.next_observations = d.next_observations[:, :2]
    with pytest.raises(DatasetError, match="column 'next_observations' has shape"):
        write_dataset(d, tmp_path / "ds")


def _rewrite(folder: Path, table: pa.Table) -> None:
    """Replace the parquet file and re-sign the manifest (a well-formed file whose content is bad)."""
    pq.write_table(table, folder / DATA_FILE)
    doc = json.loads((folder / MANIFEST).read_text())
    doc["bytes"], doc["sha256"] = (folder / DATA_FILE).stat().st_size, sha256_file(folder / DATA_FILE)
    (folder / MANIFEST).write_text(json.dumps(doc))


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    out = write_dataset(_data(), tmp_path / "ds")
    _rewrite(out, pq.read_table(out / DATA_FILE).drop(["terminals"]))
    with pytest.raises(DatasetError, match=r"transitions.parquet: column 'terminals' is missing"):
        read_dataset(out)


def test_nan_reward_in_file_is_named(tmp_path: Path) -> None:
    out = write_dataset(_data(), tmp_path / "ds")
    t = pq.read_table(out / DATA_FILE)
    rewards = pa.array([0.0, 1.0, float("nan"), 3.0, 4.0, 5.0], pa.float32())
    _rewrite(out, t.set_column(t.column_names.index("rewards"), "rewards", rewards))
    with pytest.raises(DatasetError, match=r"transitions.parquet: column 'rewards' holds NaN .*row 2"):
        read_dataset(out)


def test_ragged_observations_in_file_are_named(tmp_path: Path) -> None:
    out = write_dataset(_data(), tmp_path / "ds")
    t = pq.read_table(out / DATA_FILE)
    ragged = pa.array([[0.0, 1.0, 2.0]] * 3 + [[0.0, 1.0]] + [[0.0, 1.0, 2.0]] * 2, pa.list_(pa.float32()))
    _rewrite(out, t.set_column(t.column_names.index("observations"), "observations", ragged))
    with pytest.raises(DatasetError, match=r"column 'observations' row 3 has length 2, expected 3"):
        read_dataset(out)


def test_truncated_file_fails_the_checksum(tmp_path: Path) -> None:
    out = write_dataset(_data(), tmp_path / "ds")
    raw = (out / DATA_FILE).read_bytes()
    (out / DATA_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"transitions.parquet does not match its size/sha256 .*truncated"):
        read_dataset(out)


def test_truncated_file_with_matching_manifest_is_not_parquet(tmp_path: Path) -> None:
    out = write_dataset(_data(), tmp_path / "ds")
    raw = (out / DATA_FILE).read_bytes()
    (out / DATA_FILE).write_bytes(raw[: len(raw) // 2])
    doc = json.loads((out / MANIFEST).read_text())
    doc["bytes"], doc["sha256"] = len(raw) // 2, sha256_file(out / DATA_FILE)
    (out / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"transitions.parquet is not a readable parquet file"):
        read_dataset(out)


def test_missing_manifest_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such directory"):
        read_dataset(tmp_path / "nope")
    out = write_dataset(_data(), tmp_path / "ds")
    (out / MANIFEST).unlink()
    with pytest.raises(DatasetError, match=r"manifest.json is missing"):
        read_dataset(out)
