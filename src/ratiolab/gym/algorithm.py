"""The classic-control algorithm table: one class per algorithm, registered by name, the only dispatch.

Each algorithm is a subclass of :class:`Algorithm` in a file of its own that registers itself with
:func:`register` (``ratiolab.gym.algos`` imports them all). The trainer builds ``ALGOS[cfg.algo]``, the
config and the environment checks read the class's declarations (``on_policy``, ``objective``,
``action_spaces``, ``step_info`` and the ``update_steps`` / ``env_count`` / ``discount`` /
``normalisation`` class methods); nothing compares algorithm names. A new algorithm is a new file:
subclass :class:`ratiolab.gym.onpolicy.OnPolicy` (its hook methods) or :class:`Algorithm`, decorate it
with :func:`register`, import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

if TYPE_CHECKING:
    from ratiolab.gym.config import GymTrainConfig
    from ratiolab.gym.rollout import VecRunner


class Algorithm:
    """State and one-iteration logic of a classic-control algorithm, plus what the config reads about it.

    Declarations (class attributes): ``name`` (the ``algo`` config value); ``on_policy`` (an actor-critic
    learner that reads the ``ppo`` settings: rollout, clip, normalisation, ``ppo.compile``, the OPE gate);
    ``objective`` (the registry objective its policy loss calls; ``None``: the configurable
    ``ppo.objective``); ``action_spaces`` (the gymnasium action spaces it supports); ``step_info``
    (``info`` keys every env step must report, each with what it is).
    """

    name: ClassVar[str]
    on_policy: ClassVar[bool] = False
    objective: ClassVar[str | None] = None
    action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete, spaces.Box)
    step_info: ClassVar[dict[str, str]] = {}

    def __init__(self, cfg: GymTrainConfig, runner: VecRunner) -> None:
        self.cfg, self.runner = cfg, runner
        self.steps_per_update = type(self).update_steps(cfg)
        self.num_updates = cfg.total_steps // self.steps_per_update
        self.update_idx = 0

    # -- declarations the config reads ------------------------------------------------------------
    @classmethod
    def update_steps(cls, cfg: GymTrainConfig) -> int:
        """Environment steps between two updates (one metrics row), over all envs."""
        return cfg.ppo.batch_size

    @classmethod
    def env_count(cls, cfg: GymTrainConfig) -> int:
        return cfg.ppo.num_envs

    @classmethod
    def discount(cls, cfg: GymTrainConfig) -> float:
        """The gamma of the reward normaliser's running return."""
        return cfg.ppo.gamma

    @classmethod
    def normalisation(cls, cfg: GymTrainConfig) -> tuple[bool, bool]:
        """Whether observations and rewards are normalised."""
        return False, False

    # -- what the training loop calls -------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """Every module whose weights a checkpoint holds, by name."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Counters and optimiser states (plain data and tensors)."""
        raise NotImplementedError

    def load_state_dict(self, s: dict[str, Any]) -> None:
        raise NotImplementedError

    def act(self, obs: torch.Tensor) -> np.ndarray:
        """Deterministic action for evaluation."""
        raise NotImplementedError

    def iterate(self) -> dict[str, float]:
        """Collect ``steps_per_update`` env steps, learn, and return the iteration's metrics."""
        raise NotImplementedError


#: The algorithm classes by name, filled by :func:`register`.
ALGOS: dict[str, type[Algorithm]] = {}


A = TypeVar("A", bound=type[Algorithm])


def register(cls: A) -> A:
    """Class decorator: add ``cls`` to :data:`ALGOS` under ``cls.name`` (a second class of one name is refused)."""
    if cls.name in ALGOS:
        raise ValueError(f"gym algorithm {cls.name!r} is already registered ({ALGOS[cls.name].__qualname__})")
    ALGOS[cls.name] = cls
    return cls


def algo_class(name: str) -> type[Algorithm]:
    """The registered class of ``name`` (``ValueError`` listing the registered names)."""
    try:
        return ALGOS[name]
    except KeyError:
        raise ValueError(f"algo = {name!r} is not one of {list(ALGOS)} (the registered gym algorithms)") from None
