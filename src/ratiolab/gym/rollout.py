"""Stepping a vector environment: observation/reward normalisation, episode statistics, truncation.

:class:`VecRunner` owns the vector env and everything that must survive a checkpoint for an exact
resume (the env itself is pickled when it is a ``SyncVectorEnv``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv, VectorEnv

from ratiolab.gym.envs import check_obs
from ratiolab.gym.normalize import ObsNormalizer, RewardNormalizer


@dataclass
class Step:
    """One vector step. ``final_obs`` holds the (normalised) true successor where ``truncated``."""

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class VecRunner:
    """A vector env plus running normalisers and undiscounted episode returns of the raw rewards."""

    def __init__(
        self,
        envs: VectorEnv,
        env_id: str,
        algo: str,
        seed: int,
        *,
        gamma: float,
        norm_obs: bool,
        norm_reward: bool,
    ) -> None:
        self.envs, self.env_id, self.algo = envs, env_id, algo
        space = envs.single_observation_space
        assert isinstance(space, spaces.Box)
        self.obs_norm = ObsNormalizer(space.shape, norm_obs)
        self.rew_norm = RewardNormalizer(envs.num_envs, gamma, norm_reward)
        act = envs.single_action_space
        self.continuous = isinstance(act, spaces.Box)
        self.low = act.low if isinstance(act, spaces.Box) else None
        self.high = act.high if isinstance(act, spaces.Box) else None
        raw, _ = envs.reset(seed=seed)
        check_obs(raw, env_id, algo)
        self.obs = self.obs_norm(raw, update=True)
        self.ep_ret = np.zeros(envs.num_envs)
        self.ep_len = np.zeros(envs.num_envs, np.int64)
        self.finished: list[tuple[float, int]] = []
        self.last_info: dict[str, Any] = {}

    def step(self, action: np.ndarray) -> Step:
        env_action = np.clip(action, self.low, self.high) if self.continuous else action
        raw, reward, term, trunc, info = self.envs.step(env_action)
        check_obs(raw, self.env_id, self.algo)
        self.last_info = info
        done = term | trunc
        self.ep_ret += reward
        self.ep_len += 1
        if done.any():
            for i in np.flatnonzero(done):
                self.finished.append((float(self.ep_ret[i]), int(self.ep_len[i])))
            self.ep_ret[done] = 0.0
            self.ep_len[done] = 0
        final = self.obs
        if trunc.any():
            fo = np.stack([info["final_obs"][i] if trunc[i] else raw[i] for i in range(len(trunc))])
            final = self.obs_norm(fo)
        self.obs = self.obs_norm(raw, update=True)
        return Step(self.obs, self.rew_norm(reward, done), term, trunc, final)

    def pop_episodes(self) -> dict[str, float]:
        """Mean return and length of the episodes finished since the last call (empty if none)."""
        if not self.finished:
            return {}
        rets, lens = zip(*self.finished, strict=True)
        self.finished = []
        return {
            "episodic_return": float(np.mean(rets)),
            "episodic_length": float(np.mean(lens)),
            "episodes": float(len(rets)),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "envs": pickle.dumps(self.envs) if isinstance(self.envs, SyncVectorEnv) else None,
            "obs": self.obs.copy(),
            "ep_ret": self.ep_ret.copy(),
            "ep_len": self.ep_len.copy(),
            "obs_rms": self.obs_norm.rms.state_dict(),
            "rew_norm": self.rew_norm.state_dict(),
        }

    def load_state_dict(self, s: dict[str, Any], seed: int) -> bool:
        """Restore; returns False when the envs could not be restored (async) and were re-seeded."""
        self.obs_norm.rms.load_state_dict(s["obs_rms"])
        self.rew_norm.load_state_dict(s["rew_norm"])
        if s["envs"] is None:
            raw, _ = self.envs.reset(seed=seed)
            self.obs = self.obs_norm(raw)
            self.ep_ret[:] = 0.0
            self.ep_len[:] = 0
            return False
        self.envs.close()
        self.envs = pickle.loads(s["envs"])
        self.obs, self.ep_ret, self.ep_len = s["obs"].copy(), s["ep_ret"].copy(), s["ep_len"].copy()
        return True
