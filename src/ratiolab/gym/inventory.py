"""A small stochastic lot-sizing environment with explicit post-decision states (for PDPPO).

Each period: observe the inventory level ``x`` (negative = backlog), order ``q`` units (action in
``{0, ..., max_order}``); the post-decision state is the deterministic ``x^q = x + q``
(``info["post_decision_obs"]``); then Poisson demand ``d`` arrives and ``x' = clip(x^q - d)``.

    reward = -( setup_cost [q > 0] + unit_cost q + holding_cost max(x', 0) + backlog_cost max(-x', 0) )

Observations are scaled by ``capacity`` to about [-1, 1]. Episodes are truncated after
``horizon`` periods. Written for arXiv 2504.05150's setting (PDPPO on lot-sizing); the cost
constants are library choices [inferred].
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "ratiolab/Inventory-v0"


class InventoryEnv(gym.Env[np.ndarray, np.int64]):
    """Single-item lot sizing with setup, holding and backlog costs (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012  (gymnasium's class attribute)

    def __init__(
        self,
        capacity: int = 20,
        max_order: int = 10,
        demand_mean: float = 4.0,
        setup_cost: float = 2.0,
        unit_cost: float = 1.0,
        holding_cost: float = 0.5,
        backlog_cost: float = 3.0,
    ) -> None:
        self.capacity, self.max_order, self.demand_mean = capacity, max_order, demand_mean
        self.costs = (setup_cost, unit_cost, holding_cost, backlog_cost)
        self.action_space = spaces.Discrete(max_order + 1)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.level = 0

    def _obs(self, level: int) -> np.ndarray:
        return np.array([level / self.capacity], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.level = int(self.np_random.integers(0, self.capacity // 2 + 1))
        return self._obs(self.level), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        q = int(action)
        if not 0 <= q <= self.max_order:
            raise ValueError(f"{ENV_ID}: action must be in [0, {self.max_order}], got {action}")
        post = min(self.level + q, self.capacity)
        demand = int(self.np_random.poisson(self.demand_mean))
        self.level = max(post - demand, -self.capacity)
        setup, unit, hold, back = self.costs
        cost = setup * (q > 0) + unit * q + hold * max(self.level, 0) + back * max(-self.level, 0)
        return self._obs(self.level), -float(cost), False, False, {"post_decision_obs": self._obs(post)}


def register() -> None:
    """Register :data:`ENV_ID` with gymnasium (52 periods per episode); idempotent."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="ratiolab.gym.inventory:InventoryEnv", max_episode_steps=52)
