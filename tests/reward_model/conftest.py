"""Fixtures: a saved nano policy and reward models built from it (untrained heads, distinct seeds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratiolab.policies import build_policy
from ratiolab.policies.pretrain import save_atomically
from ratiolab.reward_model import build_reward_model


@pytest.fixture(scope="package")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tok = build_policy("nano", seed=0)
    out = tmp_path_factory.mktemp("policy") / "nano"
    save_atomically(model, tok, out, {})
    return out


@pytest.fixture(scope="package")
def rm_dirs(policy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two reward models over the policy's trunk, heads from seeds 1 and 2."""
    root = tmp_path_factory.mktemp("rms")
    out = []
    for seed in (1, 2):
        model, tok = build_reward_model(policy_dir, seed=seed)
        save_atomically(model, tok, root / f"rm{seed}", {})
        out.append(root / f"rm{seed}")
    return out
