"""``ratiolab data collect``: D4RL-style transition datasets from ratiolab's gym policies (offline.md §13).

Policy kinds (the names of D4RL, arXiv 2004.07219; the mixtures are [inferred] for this library):

- ``random``: uniform actions (``behav_logp`` = ``-log |A|`` or ``-log vol(box)``).
- ``expert``: the checkpoint of a gym run with the highest deterministic evaluation return.
- ``medium``: the checkpoint (not later than the expert's) whose return is nearest
  ``random + medium_fraction * (expert - random)``.
- ``medium-replay``: D4RL takes the replay buffer of the training run up to the medium policy; here the
  run's kept checkpoints up to the medium one, plus the uniform policy that stands for the run's start,
  each collect an equal share of the steps (what the run saw, re-collected; [inferred]).

A checkpoint acts stochastically around its deterministic action: a Gaussian of std
``noise * (high - low) / 2`` truncated to the action box (so the stored action is the sampled one and
``behav_logp`` its exact truncated-normal density), or epsilon-greedy for discrete actions
(``log(1 - eps + eps/n)`` for the greedy action, ``log(eps/n)`` otherwise). The source is a gym run
directory with checkpoints (``--source``), or one trained here first with the gym trainer.
The end of each collection segment is stored as a truncation (its successor is the true one).
The dataset records the reference returns that normalise scores: ``random`` (uniform policy) and ``expert``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from scipy import stats

from ratiolab.config import ConfigError, check_range
from ratiolab.gym.algorithm import Algorithm
from ratiolab.gym.config import GymTrainConfig, MDPOOffConfig
from ratiolab.gym.envs import make_vec
from ratiolab.gym.presets import preset
from ratiolab.gym.train import evaluate_algorithm, load_algorithm, train
from ratiolab.offline.dataset import POLICY_KINDS, DatasetMeta, TransitionDataset, write_dataset
from ratiolab.runs import RunDir

#: ``(raw observations [n, obs_dim]) -> (env actions, behaviour log-probs)``.
Behaviour = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class CollectConfig:
    """One ``ratiolab data collect`` call (see the module docstring for ``policy``)."""

    env_id: str = "Pendulum-v1"
    policy: str = "random"
    steps: int = 10_000
    seed: int = 0
    source: str = ""
    train_steps: int = 15_000
    noise: float = 0.1
    epsilon: float = 0.1
    medium_fraction: float = 0.5
    ref_episodes: int = 10

    def check(self) -> None:
        if self.policy not in POLICY_KINDS[:-1]:
            raise ConfigError(f"--policy {self.policy!r} is not one of {list(POLICY_KINDS[:-1])}")
        check_range("--steps", self.steps, "[1, inf)")
        check_range("--train-steps", self.train_steps, "[1, inf)")
        check_range("--noise", self.noise, "[0, inf)")
        check_range("--epsilon", self.epsilon, "[0, 1]")
        check_range("--medium-fraction", self.medium_fraction, "(0, 1)")
        check_range("--ref-episodes", self.ref_episodes, "[1, inf)")


def expert_config(env_id: str, steps: int, seed: int, continuous: bool) -> GymTrainConfig:
    """The gym run trained when no ``--source`` is given: off-policy MDPO (SAC-like) for continuous
    actions, the ``cartpole-pqn`` settings for discrete ones; a checkpoint and evaluation every iteration."""
    if continuous:
        cfg = GymTrainConfig(
            env_id=env_id, algo="mdpo_off",
            mdpo_off=MDPOOffConfig(learning_starts=1000, hidden=[64, 64], batch_size=128, steps_per_iteration=1000),
        )
    else:
        cfg = preset("cartpole-pqn")
        cfg.env_id = env_id
    cfg.seed, cfg.total_steps = seed, steps
    cfg.checkpoint_every, cfg.keep_checkpoints, cfg.eval_every, cfg.eval_episodes = 1, 10_000, 0, 5
    return cfg


def uniform_behaviour(space: spaces.Space, rng: np.random.Generator) -> Behaviour:
    """Uniform actions over ``space`` with their log-density."""
    if isinstance(space, spaces.Discrete):
        n = int(space.n)
        return lambda obs: (rng.integers(0, n, len(obs)), np.full(len(obs), -np.log(n)))
    assert isinstance(space, spaces.Box)
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    logp = -float(np.log(high - low).sum())
    return lambda obs: (rng.uniform(low, high, (len(obs), *low.shape)), np.full(len(obs), logp))


def noisy_behaviour(
    algo: Algorithm, space: spaces.Space, noise: float, epsilon: float, rng: np.random.Generator
) -> Behaviour:
    """``algo``'s deterministic action plus truncated-Gaussian noise (Box) or epsilon-greedy (Discrete)."""
    norm = algo.runner.obs_norm

    def mode(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(algo.act(torch.from_numpy(norm(obs))))

    if isinstance(space, spaces.Discrete):
        n = int(space.n)

        def greedy(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            best = mode(obs).astype(np.int64).reshape(len(obs))
            explore = rng.random(len(obs)) < epsilon
            action = np.where(explore, rng.integers(0, n, len(obs)), best)
            logp = np.where(action == best, np.log(1 - epsilon + epsilon / n), np.log(max(epsilon, 1e-300) / n))
            return np.asarray(action), np.asarray(logp)

        return greedy
    assert isinstance(space, spaces.Box)
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    std = noise * (high - low) / 2

    def gaussian(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.clip(mode(obs).astype(np.float64).reshape(len(obs), *low.shape), low, high)
        if noise == 0:
            return mean, np.full(len(obs), np.nan)  # a point mass: no density
        a, b = (low - mean) / std, (high - mean) / std
        dist = stats.truncnorm(a, b, loc=mean, scale=std)
        action = np.asarray(dist.rvs(size=mean.shape, random_state=rng)).reshape(mean.shape)
        return action, np.asarray(dist.logpdf(action)).sum(-1)

    return gaussian


def rollout(env_id: str, behaviour: Behaviour, steps: int, seed: int, first_episode: int) -> dict[str, np.ndarray]:
    """``steps`` transitions of ``behaviour`` on one env seeded ``seed``; the last one is marked truncated."""
    envs = make_vec(env_id, 1, "sync")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                                         "terminals", "truncations", "episode_ids", "behav_logp")}
    try:
        obs, _ = envs.reset(seed=seed)
        episode = first_episode
        for t in range(steps):
            action, logp = behaviour(obs)
            nxt, reward, term, trunc, info = envs.step(action)
            done = bool(term[0] or trunc[0])
            succ = np.asarray(info["final_obs"][0])[None] if done else nxt
            for k, v in (("observations", obs), ("actions", action), ("rewards", reward),
                         ("next_observations", succ), ("terminals", term),
                         ("truncations", trunc | (t == steps - 1 and not term[0])),
                         ("episode_ids", np.array([episode])), ("behav_logp", logp)):
                cols[k].append(np.asarray(v))
            episode += int(done)
            obs = nxt
    finally:
        envs.close()
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["behav_logp"] = out["behav_logp"].astype(np.float32)
    return out


def _uniform_return(env_id: str, space: spaces.Space, episodes: int, seed: int) -> float:
    envs = make_vec(env_id, episodes, "sync")
    rng = np.random.default_rng(seed)
    act = uniform_behaviour(space, rng)
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])  # type: ignore[arg-type]
        returns, alive = np.zeros(episodes), np.ones(episodes, bool)
        while alive.any():
            obs, reward, term, trunc, _ = envs.step(act(obs)[0])
            returns += reward * alive
            alive &= ~(term | trunc)
    finally:
        envs.close()
    return float(returns.mean())


def _action_space(env_id: str) -> spaces.Space:
    envs = make_vec(env_id, 1, "sync")
    try:
        return envs.single_action_space
    finally:
        envs.close()


def pick_checkpoints(returns: dict[int, float], random_return: float, fraction: float) -> tuple[int, int]:
    """``(expert step, medium step)`` from each checkpoint's evaluation return (see the module docstring)."""
    expert = max(returns, key=lambda s: (returns[s], -s))
    target = random_return + fraction * (returns[expert] - random_return)
    medium = min((s for s in returns if s <= expert), key=lambda s: (abs(returns[s] - target), s))
    return expert, medium


def collect(cfg: CollectConfig, out: str | Path, overwrite: bool = False, log: Callable[[str], None] = print) -> Path:
    """Collect and write the dataset of ``cfg`` to ``out`` (see the module docstring)."""
    cfg.check()
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} already exists; choose another folder or pass --force")
    space = _action_space(cfg.env_id)
    discrete = isinstance(space, spaces.Discrete)
    rng = np.random.default_rng(cfg.seed)
    ref = {"random": _uniform_return(cfg.env_id, space, cfg.ref_episodes, cfg.seed + 50_000)}
    source = cfg.source
    segments: list[tuple[str, Behaviour, int]] = []
    if cfg.policy == "random":
        segments.append(("random", uniform_behaviour(space, rng), cfg.steps))
    else:
        if not source:
            source = str(out.parent / f"{out.name}-source")
            gcfg = expert_config(cfg.env_id, cfg.train_steps, cfg.seed, not discrete)
            log(f"training the source policy ({gcfg.algo}, {cfg.train_steps} steps) into {source}")
            train(gcfg, Path(source))
        run = RunDir.open(source)
        steps = run.checkpoint_steps()
        if not steps:
            raise ConfigError(f"--source {source} has no checkpoints; train it with checkpoint_every >= 1")
        algos = {s: load_algorithm(Path(source), s)[1] for s in steps}
        returns = {s: evaluate_algorithm(a, cfg.ref_episodes, cfg.seed + 60_000).mean for s, a in algos.items()}
        expert, medium = pick_checkpoints(returns, ref["random"], cfg.medium_fraction)
        ref["expert"] = returns[expert]
        log(f"checkpoint returns {returns}; expert = step {expert}, medium = step {medium}")
        noisy = {s: noisy_behaviour(a, space, cfg.noise, cfg.epsilon, rng) for s, a in algos.items()}
        if cfg.policy == "expert":
            segments.append((f"step {expert}", noisy[expert], cfg.steps))
        elif cfg.policy == "medium":
            segments.append((f"step {medium}", noisy[medium], cfg.steps))
        else:
            mixture = [("random", uniform_behaviour(space, rng))]
            mixture += [(f"step {s}", noisy[s]) for s in steps if s <= medium]
            share = max(cfg.steps // len(mixture), 1)
            for i, (name, b) in enumerate(mixture):
                n = cfg.steps - share * (len(mixture) - 1) if i == len(mixture) - 1 else share
                segments.append((name, b, n))
    parts, episode = [], 0
    for i, (_, behaviour, n) in enumerate(segments):
        part = rollout(cfg.env_id, behaviour, n, cfg.seed + 1000 * i, episode)
        episode = int(part["episode_ids"][-1]) + 1
        parts.append(part)
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    meta = DatasetMeta(
        env_id=cfg.env_id, policy=cfg.policy, seeds=[cfg.seed], steps=cfg.steps, source=source, discrete=discrete,
        ref_returns=ref,
        extra={"segments": [[name, n] for name, _, n in segments], "noise": cfg.noise, "epsilon": cfg.epsilon},
    )
    data = TransitionDataset(
        observations=cols["observations"].astype(np.float32),
        actions=cols["actions"].astype(np.int64 if discrete else np.float32),
        rewards=cols["rewards"].astype(np.float32),
        next_observations=cols["next_observations"].astype(np.float32),
        terminals=cols["terminals"].astype(bool), truncations=cols["truncations"].astype(bool),
        episode_ids=cols["episode_ids"].astype(np.int64), behav_logp=cols["behav_logp"], meta=meta,
    )
    return write_dataset(data, out, overwrite=overwrite)
