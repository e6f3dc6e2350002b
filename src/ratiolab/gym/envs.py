"""Vector environments and the up-front checks that run before any run directory is created.

Environments are gymnasium vector envs with ``SAME_STEP`` autoreset: when an episode ends, the
returned observation is already the next episode's first one and the true successor sits in
``info["final_obs"]`` (needed to bootstrap through time-limit truncation).
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from ratiolab.gym import inventory
from ratiolab.gym.algos import algo_class
from ratiolab.gym.rollout import EnvError, check_obs
from ratiolab.objectives.grpo_guard import GAUSSIAN_ONLY

__all__ = ["EnvError", "check_obs", "make_vec", "validate"]


def _make(env_id: str) -> gym.Env:
    inventory.register()
    return gym.make(env_id, disable_env_checker=True)


def make_vec(env_id: str, num_envs: int, vector: str = "sync") -> VectorEnv:
    """``num_envs`` copies of ``env_id`` in a sync or async vector env (SAME_STEP autoreset)."""
    fns = [functools.partial(_make, env_id) for _ in range(num_envs)]
    if vector == "async":
        return AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def validate(
    env_id: str, algo: str, seed: int, probe_steps: int = 8, objective: str = "ppo", discrete: bool = False
) -> None:
    """Check that ``env_id`` exists, fits ``algo`` and ``objective``, and yields finite observations (a probe).

    The algorithm class declares its action spaces and the ``info`` keys every step must report.
    ``discrete=True`` (the training-loop OPE gate) also requires a Discrete action space.
    """
    cls = algo_class(algo)
    inventory.register()
    try:
        env = _make(env_id)
    except gym.error.DependencyNotInstalled as err:
        raise EnvError(
            f"environment {env_id!r} (algo {algo!r}) needs an optional dependency: {err}; for MuJoCo tasks "
            "pip install 'ratiolab[mujoco]'"
        ) from err
    except gym.error.Error as err:
        raise EnvError(
            f"unknown environment id {env_id!r} for algo {algo!r} ({err}); use a gymnasium id such as "
            f"CartPole-v1 or {inventory.ENV_ID}"
        ) from err
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise EnvError(
                f"environment {env_id!r} has observation space {obs_space}; algo {algo!r} needs a flat Box"
            )
        allowed = cls.action_spaces
        if not isinstance(act_space, allowed):
            raise EnvError(
                f"algo {algo!r} does not fit environment {env_id!r}: action space {act_space} is not one of "
                f"{[t.__name__ for t in allowed]}; pick another --algo (e.g. ppo) or environment"
            )
        if objective in GAUSSIAN_ONLY and not isinstance(act_space, spaces.Box):
            raise EnvError(
                f"objective {objective!r} is defined only for Gaussian (continuous-action) policies; environment "
                f"{env_id!r} has action space {act_space}: use another objective (e.g. ppo, group_centred_ppo) or a "
                "continuous-action environment such as Pendulum-v1"
            )
        if discrete and not isinstance(act_space, spaces.Discrete):
            raise EnvError(
                f"ope_gate.enabled needs a Discrete action space (its behaviour policy mixes in uniform actions); "
                f"environment {env_id!r} has {act_space}: disable the gate or pick a discrete-action environment"
            )
        obs, _ = env.reset(seed=seed)
        check_obs(np.asarray(obs), env_id, algo)
        act_space.seed(seed)
        for _ in range(probe_steps):
            obs, _, term, trunc, info = env.step(act_space.sample())
            check_obs(np.asarray(obs), env_id, algo)
            for key, what in cls.step_info.items():
                if key not in info:
                    raise EnvError(
                        f"algo {algo!r} needs {what}: environment {env_id!r} does not report info[{key!r}]; "
                        f"use {inventory.ENV_ID} or add it to the environment"
                    )
            if term or trunc:
                obs, _ = env.reset()
    finally:
        env.close()
