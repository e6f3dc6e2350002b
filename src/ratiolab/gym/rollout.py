"""Stepping a vector environment: observation/reward normalisation, episode statistics, truncation.

:class:`VecRunner` owns the vector env and everything that must survive a checkpoint for an exact
resume. The state of a ``SyncVectorEnv`` is stored as plain data, never pickled:
:func:`env_state` walks the vector env and each sub-env's wrapper chain down to the unwrapped env and
keeps every attribute that is a number, string, bool, None, numpy array (as a tensor), tuple/list of
those, or a numpy ``Generator`` (its bit-generator state as JSON); :func:`load_env_state` writes them
back onto freshly made envs of the same id. Loading a checkpoint therefore never executes stored code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv, VectorEnv

from ratiolab.gym.normalize import ObsNormalizer, RewardNormalizer, as_tensor

_SCALARS = (bool, int, float, str, type(None))
_SKIP = object()


class EnvError(ValueError):
    """The environment cannot be used with the chosen algorithm; the message names both."""


def check_obs(obs: np.ndarray, env_id: str, algo: str) -> None:
    """Raise :class:`EnvError` if an observation batch holds NaN or infinity."""
    if not np.isfinite(obs).all():
        raise EnvError(
            f"environment {env_id!r} returned a non-finite observation (NaN/inf) while training algo "
            f"{algo!r}; fix the environment or wrap it to sanitise observations"
        )


def _encode(value: Any) -> Any:
    """Plain-data form of ``value`` (or ``_SKIP`` when it is not state this module stores)."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"scalar": value.item(), "dtype": value.dtype.str}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {"array": as_tensor(value)}
    if isinstance(value, np.random.Generator):
        return {"rng": json.dumps(value.bit_generator.state)}
    if isinstance(value, tuple | list):
        items = [_encode(v) for v in value]
        if all(i is not _SKIP for i in items):
            return {"tuple" if isinstance(value, tuple) else "list": items}
    return _SKIP


def _decode(enc: Any) -> Any:
    if isinstance(enc, _SCALARS):
        return enc
    if not isinstance(enc, dict) or len(enc) not in (1, 2):
        raise ValueError(f"env state: unexpected stored value of type {type(enc).__name__}; the checkpoint is corrupt")
    if "scalar" in enc:
        return np.array(enc["scalar"], dtype=np.dtype(str(enc["dtype"])))[()]
    if "array" in enc and isinstance(enc["array"], torch.Tensor):
        return enc["array"].numpy().copy()
    if "rng" in enc and isinstance(enc["rng"], str):
        state = json.loads(enc["rng"])
        bit_gen = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM, "MT19937": np.random.MT19937,
                   "Philox": np.random.Philox, "SFC64": np.random.SFC64}.get(state.get("bit_generator"))
        if bit_gen is None:
            raise ValueError(f"env state: unknown bit generator {state.get('bit_generator')!r}")
        gen = np.random.Generator(bit_gen())
        gen.bit_generator.state = state
        return gen
    if "tuple" in enc or "list" in enc:
        items = [_decode(v) for v in (enc["tuple"] if "tuple" in enc else enc["list"])]
        return tuple(items) if "tuple" in enc else items
    raise ValueError(f"env state: unexpected stored value with keys {sorted(enc)}; the checkpoint is corrupt")



def _chain(env: gym.Env) -> list[Any]:
    """``env`` and every wrapper below it, down to the unwrapped env."""
    out: list[Any] = [env]
    while isinstance(out[-1], gym.Wrapper):
        out.append(out[-1].env)
    return out


def _object_state(obj: Any) -> dict[str, Any]:
    encoded = {k: _encode(v) for k, v in vars(obj).items()}
    return {"class": type(obj).__qualname__, "attrs": {k: v for k, v in encoded.items() if v is not _SKIP}}


def env_state(envs: SyncVectorEnv) -> dict[str, Any]:
    """Plain-data state of a sync vector env: its own attributes and each sub-env's wrapper chain."""
    return {"vector": _object_state(envs), "envs": [[_object_state(o) for o in _chain(e)] for e in envs.envs]}


def _load_object(obj: Any, state: Any) -> None:
    if not isinstance(state, dict) or state.get("class") != type(obj).__qualname__:
        raise ValueError(
            f"env state: stored object {state.get('class') if isinstance(state, dict) else state!r} does not match "
            f"{type(obj).__qualname__}; resume with the env id the run was trained on"
        )
    for k, enc in state["attrs"].items():
        setattr(obj, k, _decode(enc))


def load_env_state(envs: SyncVectorEnv, state: Any) -> None:
    """Write :func:`env_state` back onto ``envs`` (same env id and count); anything else is refused."""
    if not isinstance(state, dict) or not isinstance(state.get("envs"), list) or len(state["envs"]) != envs.num_envs:
        raise ValueError(
            f"env state: expected the plain-data state of {envs.num_envs} envs, got {type(state).__name__}; "
            "checkpoints with pickled environments are not loaded (they could execute code): start a new run"
        )
    _load_object(envs, state["vector"])
    for env, chain in zip(envs.envs, state["envs"], strict=True):
        objs = _chain(env)
        if not isinstance(chain, list) or len(chain) != len(objs):
            raise ValueError("env state: the stored wrapper chain does not match the environment")
        for obj, s in zip(objs, chain, strict=True):
            _load_object(obj, s)


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
            "envs": env_state(self.envs) if isinstance(self.envs, SyncVectorEnv) else None,
            "obs": as_tensor(self.obs),
            "ep_ret": as_tensor(self.ep_ret),
            "ep_len": as_tensor(self.ep_len),
            "obs_rms": self.obs_norm.rms.state_dict(),
            "rew_norm": self.rew_norm.state_dict(),
        }

    def load_state_dict(self, s: dict[str, Any], seed: int, envs: bool = True) -> bool:
        """Restore; returns False when the envs could not be restored (async) and were re-seeded.

        ``envs=False`` (evaluation, which makes its own envs) restores the normalisers only.
        """
        self.obs_norm.rms.load_state_dict(s["obs_rms"])
        self.rew_norm.load_state_dict(s["rew_norm"])
        if not envs:
            return False
        if s["envs"] is None:
            raw, _ = self.envs.reset(seed=seed)
            self.obs = self.obs_norm(raw)
            self.ep_ret[:] = 0.0
            self.ep_len[:] = 0
            return False
        if not isinstance(self.envs, SyncVectorEnv):
            raise ValueError("runner state: a sync vector env's state can only be restored into vector='sync'")
        load_env_state(self.envs, s["envs"])
        self.obs, self.ep_ret, self.ep_len = (np.array(s[k]) for k in ("obs", "ep_ret", "ep_len"))
        return True
