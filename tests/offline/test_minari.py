"""Minari export/import round trip (skipped where the optional minari package is not installed; ~15 s)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ratiolab.offline.collect import CollectConfig, collect
from ratiolab.offline.dataset import read_dataset

pytest.importorskip("minari")

from ratiolab.offline.minari_io import from_minari, to_minari


@pytest.mark.slow
def test_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    data = read_dataset(collect(CollectConfig(env_id="Pendulum-v1", steps=450, ref_episodes=1), tmp_path / "ds",
                                log=lambda _: None))
    data.meta = dataclasses.replace(data.meta, ref_returns={"random": -1200.0, "expert": -150.0})
    to_minari(data, "ratiolab/pendulum-random-v0")
    back = from_minari("ratiolab/pendulum-random-v0")
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "truncations",
                 "episode_ids"):
        np.testing.assert_allclose(getattr(back, name), getattr(data, name), rtol=1e-6)
    assert back.meta.env_id == "Pendulum-v1" and back.meta.ref_returns == {"random": -1200.0, "expert": -150.0}
    assert np.isnan(back.behav_logp).all()
