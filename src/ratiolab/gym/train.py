"""Entry points the CLI calls: :func:`train` (fresh or exact resume) and :func:`evaluate`.

Everything is validated before a run directory is created. A checkpoint holds every module's
weights and, as safetensors + JSON (no pickle), the optimisers, the python/numpy/torch RNG states,
the sync vector env's state as plain data (``ratiolab.gym.rollout.env_state``), the normalisers,
the OPE gate's best estimate and the iteration counter, so that on CPU
``N steps == N/2 steps + resume + N/2 steps`` bit for bit.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ratiolab.config import from_dict, to_dict
from ratiolab.gym.algorithm import Algorithm
from ratiolab.gym.config import GymTrainConfig
from ratiolab.gym.envs import EnvError, make_vec, validate
from ratiolab.gym.gate import gated_iterate
from ratiolab.gym.onpolicy import OnPolicy
from ratiolab.gym.rollout import VecRunner
from ratiolab.ope.gate import BestSoFarGate
from ratiolab.report import GYM_PANELS, write_report
from ratiolab.runs import RunDir, check_resume_config, rng_state, set_rng_state
from ratiolab.trackers import check_trackers, make_trackers

Progress = Callable[[dict[str, Any]], None]
#: Fields a resumed run may change (``total_steps`` extends it, also a finished run); others are refused.
RESUME_MAY_CHANGE = ("total_steps", "torch_threads", "log")

@dataclass(frozen=True)
class EvalResult:
    """Undiscounted returns of deterministic evaluation episodes (one per seeded env)."""

    returns: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


@dataclass
class GymResult:
    """What :func:`train` returns. ``train_seconds`` excludes evaluation time."""

    steps: int
    updates: int
    train_seconds: float
    final_eval: EvalResult | None
    reached_target_step: int | None = None
    reached_target_seconds: float | None = None
    run_dir: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _build(cfg: GymTrainConfig, num_envs: int | None = None) -> Algorithm:
    """The registered class of ``cfg.algo`` on a fresh vector env (``num_envs``: that many sync envs)."""
    cls = cfg.algo_class
    envs = make_vec(cfg.env_id, num_envs or cfg.num_envs, cfg.vector if num_envs is None else "sync")
    norm_obs, norm_reward = cls.normalisation(cfg)
    runner = VecRunner(
        envs, cfg.env_id, cfg.algo, cfg.seed, gamma=cls.discount(cfg), norm_obs=norm_obs, norm_reward=norm_reward
    )
    return cls(cfg, runner)


def evaluate_algorithm(algo: Algorithm, episodes: int, seed: int) -> EvalResult:
    """``episodes`` deterministic episodes, env ``i`` seeded ``seed + i``; observation statistics frozen."""
    runner = algo.runner
    envs = make_vec(runner.env_id, episodes, "sync")
    try:
        raw, _ = envs.reset(seed=[seed + i for i in range(episodes)])  # type: ignore[arg-type]
        returns, alive = np.zeros(episodes), np.ones(episodes, bool)
        while alive.any():
            action = algo.act(torch.from_numpy(runner.obs_norm(raw)))
            if runner.continuous:
                action = np.clip(action, runner.low, runner.high)
            raw, reward, term, trunc, _ = envs.step(action)
            returns += reward * alive
            alive &= ~(term | trunc)
    finally:
        envs.close()
    return EvalResult([float(r) for r in returns])


def _save(run: RunDir, algo: Algorithm, step: int, train_seconds: float, keep: int, gate: BestSoFarGate | None) -> None:
    weights = {f"{name}.{k}": v for name, m in algo.modules().items() for k, v in m.state_dict().items()}
    state = {
        "algo": algo.state_dict(),
        "runner": algo.runner.state_dict(),
        "rng": rng_state(),
        "train_seconds": train_seconds,
        "gate": None if gate is None else gate.state_dict(),
    }
    run.save(step, weights, state, keep=keep)


def _load(
    algo: Algorithm,
    ckpt_weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    seed: int,
    gate: BestSoFarGate | None = None,
    envs: bool = True,
) -> bool:
    for name, m in algo.modules().items():
        prefix = f"{name}."
        m.load_state_dict({k[len(prefix) :]: v for k, v in ckpt_weights.items() if k.startswith(prefix)})
    algo.load_state_dict(state["algo"])
    exact = algo.runner.load_state_dict(state["runner"], seed + algo.update_idx, envs)
    set_rng_state(state["rng"])
    if gate is not None:
        gate.load_state_dict(state["gate"])
    return exact


def train(
    cfg: GymTrainConfig,
    run_dir: Path | None,
    resume: bool = False,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> GymResult:
    """Train ``cfg.algo`` on ``cfg.env_id``; with ``run_dir`` log metrics, checkpoint and write a report.

    ``resume=True`` continues the run in ``run_dir`` from its latest checkpoint (``cfg`` must equal
    its stored config except :data:`RESUME_MAY_CHANGE`; a run without a checkpoint starts over).
    ``progress`` is called with every logged row. ``stop_after`` (env steps) checkpoints and returns
    early, e.g. to split a run in two.
    """
    validate(cfg.env_id, cfg.algo, cfg.seed, objective=cfg.ppo.objective, discrete=cfg.ope_gate.enabled)
    check_trackers(cfg.log, packages=True)
    if resume:
        if run_dir is None:
            raise ValueError("train: resume=True needs run_dir (the run to continue)")
        run: RunDir | None = RunDir.open(run_dir)
        assert run is not None
        stored = to_dict(from_dict(GymTrainConfig, run.config()))
        check_resume_config(run.path, stored, to_dict(cfg), RESUME_MAY_CHANGE)
        run.write_config(to_dict(cfg))  # an extended run records its new length
    else:
        run = RunDir.create(run_dir, to_dict(cfg)) if run_dir is not None else None
    with _threads(cfg.torch_threads):
        return _loop(cfg, run, resume, progress, stop_after)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (tiny MLPs are fastest single-threaded)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _loop(
    cfg: GymTrainConfig, run: RunDir | None, resume: bool, progress: Progress | None, stop_after: int | None
) -> GymResult:
    _seed_all(cfg.seed)
    algo = _build(cfg)
    g = cfg.ope_gate
    gate = BestSoFarGate(margin=g.margin) if g.enabled else None
    train_s, rows = 0.0, list[dict[str, Any]]()
    if resume:
        assert run is not None
        ckpt = run.resume_point()
        run.tracker = make_trackers(cfg.log, run.path, to_dict(cfg), -1 if ckpt is None else ckpt.step)
        exact = ckpt is None or _load(algo, ckpt.weights, ckpt.state, cfg.seed, gate)
        train_s = 0.0 if ckpt is None else float(ckpt.state["train_seconds"])
        if ckpt is not None and not exact:
            run.log({"step": ckpt.step, "resume/envs_reseeded": 1.0})
    elif run is not None:
        run.tracker = make_trackers(cfg.log, run.path, to_dict(cfg))
    result = GymResult(0, 0, 0.0, None, run_dir=None if run is None else run.path, rows=rows)
    last_eval: EvalResult | None = None
    try:
        while algo.update_idx < algo.num_updates:
            t0 = time.perf_counter()
            if gate is not None:
                assert isinstance(algo, OnPolicy)
                metrics = gated_iterate(algo, gate, g, cfg.seed)
            else:
                metrics = algo.iterate()
            train_s += time.perf_counter() - t0
            u, step = algo.update_idx, algo.update_idx * algo.steps_per_update
            row: dict[str, Any] = {"step": step, "update": u, **metrics, "time/train_s": train_s}
            done = u == algo.num_updates or (stop_after is not None and step >= stop_after)
            if (cfg.eval_every and u % cfg.eval_every == 0) or u == algo.num_updates:
                last_eval = evaluate_algorithm(algo, cfg.eval_episodes, cfg.eval_seed)
                row["eval/return_mean"], row["eval/return_std"] = last_eval.mean, last_eval.std
                if cfg.target_return is not None and last_eval.mean >= cfg.target_return:
                    result.reached_target_step, result.reached_target_seconds = step, train_s
                    done = True
            rows.append(row)
            if run is not None:
                run.log(row)
                if done or (cfg.checkpoint_every and u % cfg.checkpoint_every == 0):
                    _save(run, algo, step, train_s, cfg.keep_checkpoints, gate)
            if progress is not None:
                progress(row)
            if done:
                break
    finally:
        algo.runner.envs.close()
        if run is not None and run.tracker is not None:
            run.tracker.close(failed=sys.exc_info()[0] is not None)
    result.steps, result.updates = algo.update_idx * algo.steps_per_update, algo.update_idx
    result.train_seconds, result.final_eval = train_s, last_eval
    if run is not None:
        summary = [
            ("env", cfg.env_id),
            ("algo", cfg.algo),
            ("steps", str(result.steps)),
            ("train seconds (excl. eval)", f"{train_s:.1f}"),
        ]
        logged = run.last_values(("eval/return_mean", "eval/return_std"))  # also for a finished run resumed
        if len(logged) == 2:
            ret = f"{logged['eval/return_mean']:.1f} ± {logged['eval/return_std']:.1f}"
            summary.append(("deterministic eval return", ret))
        write_report(run, GYM_PANELS, title=f"{cfg.algo} on {cfg.env_id}", summary=summary)
    return result


def load_algorithm(run_dir: Path, step: int | None = None) -> tuple[GymTrainConfig, Algorithm]:
    """The config of ``run_dir`` and its algorithm with checkpoint ``step`` loaded (default: the latest).

    The algorithm's own env is closed (evaluation and collection make theirs); its observation
    normaliser is the checkpoint's.
    """
    run = RunDir.open(run_dir)
    cfg = from_dict(GymTrainConfig, run.config())
    ckpt = run.latest() if step is None else run.load(step)
    if ckpt is None:
        raise ValueError(f"evaluate: {run_dir} has no checkpoint yet; train first")
    try:
        validate(cfg.env_id, cfg.algo, cfg.seed, objective=cfg.ppo.objective)
    except EnvError as err:
        raise ValueError(f"evaluate: {err}") from err
    algo = _build(cfg, num_envs=1)
    try:
        _load(algo, ckpt.weights, ckpt.state, cfg.seed, envs=False)
    finally:
        algo.runner.envs.close()
    return cfg, algo


def evaluate(run_dir: Path, episodes: int = 20, seed: int | None = None) -> EvalResult:
    """Deterministic evaluation of the latest checkpoint of ``run_dir`` (default seed: the config's)."""
    cfg, algo = load_algorithm(run_dir)
    with _threads(cfg.torch_threads):
        return evaluate_algorithm(algo, episodes, cfg.eval_seed if seed is None else seed)
