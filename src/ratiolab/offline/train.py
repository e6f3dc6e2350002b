"""``ratiolab offline train``: fit an offline learner to a transition dataset, evaluate it in the dataset's env.

States are normalised with the dataset's mean and std (``+ 1e-3``, as TD3+BC does); actions are mapped
from the action box to ``[-1, 1]``. Evaluation runs deterministic episodes and reports the raw return and,
where the dataset recorded both reference returns, the D4RL-style normalised score
``100 * (R - R_random) / (R_expert - R_random)``. The run directory holds ``config.yaml``,
``metrics.jsonl`` and atomic checkpoints (:class:`ratiolab.runs.RunDir`). A run does not resume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from ratiolab.config import ConfigError, check_range, to_dict
from ratiolab.gym.envs import make_vec
from ratiolab.offline.dataset import TransitionDataset, read_dataset
from ratiolab.offline.learners import OFFLINE_ALGOS, LearnerConfig, OfflineLearner, as_batch, optimizer_state
from ratiolab.runs import RunDir


@dataclass
class OfflineTrainConfig:
    """One offline run: ``algo`` (``td3bc``, ``iql``, ``prdc``) on the dataset folder ``data``."""

    algo: str = "td3bc"
    data: str = ""
    steps: int = 100_000
    batch_size: int = 256
    seed: int = 0
    eval_every: int = 5000
    eval_episodes: int = 10
    eval_seed: int = 10_000
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    learner: LearnerConfig = field(default_factory=LearnerConfig)

    def check(self) -> None:
        if self.algo not in OFFLINE_ALGOS:
            raise ConfigError(f"--algo {self.algo!r} is not one of {sorted(OFFLINE_ALGOS)}")
        for name in ("steps", "batch_size", "eval_episodes", "keep_checkpoints"):
            check_range(name, getattr(self, name), "[1, inf)")
        for name in ("eval_every", "checkpoint_every"):
            check_range(name, getattr(self, name), "[0, inf)", "0 = only at the end")


@dataclass
class OfflineResult:
    returns: list[float]
    score: float | None
    rows: list[dict[str, Any]]


class Scaler:
    """State normalisation and the action box <-> ``[-1, 1]`` map of one dataset."""

    def __init__(self, data: TransitionDataset, low: np.ndarray, high: np.ndarray) -> None:
        self.mean = data.observations.mean(0)
        self.std = data.observations.std(0) + 1e-3
        self.centre, self.half = (high + low) / 2, (high - low) / 2

    def obs(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def to_unit(self, a: np.ndarray) -> np.ndarray:
        return np.clip((a - self.centre) / self.half, -1.0, 1.0).astype(np.float32)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        return (a * self.half + self.centre).astype(np.float32)


def normalised_score(ret: float, ref: dict[str, float]) -> float | None:
    """``100 * (R - random) / (expert - random)`` (None without both references)."""
    if "random" not in ref or "expert" not in ref or ref["expert"] == ref["random"]:
        return None
    return 100.0 * (ret - ref["random"]) / (ref["expert"] - ref["random"])


def evaluate(learner: OfflineLearner, scaler: Scaler, env_id: str, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of ``episodes`` deterministic episodes, env ``i`` seeded ``seed + i``."""
    envs = make_vec(env_id, episodes, "sync")
    try:
        raw, _ = envs.reset(seed=[seed + i for i in range(episodes)])  # type: ignore[arg-type]
        returns, alive = np.zeros(episodes), np.ones(episodes, bool)
        while alive.any():
            with torch.no_grad():
                a = learner.act(torch.from_numpy(scaler.obs(raw))).numpy()
            raw, reward, term, trunc, _ = envs.step(scaler.to_env(a))
            returns += reward * alive
            alive &= ~(term | trunc)
    finally:
        envs.close()
    return [float(r) for r in returns]


def _box(env_id: str, data_path: str) -> spaces.Box:
    envs = make_vec(env_id, 1, "sync")
    try:
        space = envs.single_action_space
    finally:
        envs.close()
    if not isinstance(space, spaces.Box):
        raise ConfigError(f"{data_path}: env {env_id!r} has action space {space}; the offline learners need "
                          "continuous (Box) actions, e.g. a Pendulum-v1 dataset")
    return space


def train(cfg: OfflineTrainConfig, run_dir: str | Path | None, log: Any = None) -> OfflineResult:
    """Train ``cfg.algo`` on ``cfg.data``; with ``run_dir`` log metrics and write checkpoints."""
    cfg.check()
    data = read_dataset(cfg.data)
    space = _box(data.meta.env_id, cfg.data)
    if data.act_dim != space.shape[0]:
        raise ConfigError(f"{cfg.data}: column 'actions' has width {data.act_dim} but env "
                          f"{data.meta.env_id!r} has {space.shape[0]} action dimensions")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    scaler = Scaler(data, space.low.astype(np.float64), space.high.astype(np.float64))
    full = as_batch({
        "obs": scaler.obs(data.observations), "act": scaler.to_unit(data.actions), "rew": data.rewards,
        "next_obs": scaler.obs(data.next_observations), "term": data.terminals,
    })
    learner = OFFLINE_ALGOS[cfg.algo](cfg.learner, data.obs_dim, data.act_dim, full)
    run = RunDir.create(run_dir, to_dict(cfg)) if run_dir is not None else None
    rows: list[dict[str, Any]] = []
    returns: list[float] = []
    t0, n = time.perf_counter(), len(data)
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        metrics = learner.update({k: v[idx] for k, v in full.items()}, step)
        last = step == cfg.steps
        if (cfg.eval_every and step % cfg.eval_every == 0) or last:
            returns = evaluate(learner, scaler, data.meta.env_id, cfg.eval_episodes, cfg.eval_seed)
            row: dict[str, Any] = {"step": step, **{k: float(v) for k, v in metrics.items()},
                                   "eval/return_mean": float(np.mean(returns)),
                                   "time/train_s": time.perf_counter() - t0}
            score = normalised_score(float(np.mean(returns)), data.meta.ref_returns)
            if score is not None:
                row["eval/normalised_score"] = score
            rows.append(row)
            if run is not None:
                run.log(row)
            if log is not None:
                log(row)
        if run is not None and ((cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or last):
            weights = {f"{m}.{k}": v for m, mod in learner.modules().items() for k, v in mod.state_dict().items()}
            run.save(step, weights, {"optimizers": optimizer_state(learner), "obs_mean": torch.as_tensor(scaler.mean),
                                     "obs_std": torch.as_tensor(scaler.std)}, keep=cfg.keep_checkpoints)
    return OfflineResult(returns, normalised_score(float(np.mean(returns)), data.meta.ref_returns), rows)
