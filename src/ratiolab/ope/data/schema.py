"""Logged bandit feedback: a typed, validated record of (x_i, a_i, r_i, π_b(a_i|x_i)) rounds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ratiolab.ope.validation import (
    FloatArray,
    IntArray,
    as_float,
    as_index,
    as_probability,
    check_distribution,
    check_rows,
)


@dataclass(frozen=True)
class LoggedBanditFeedback:
    """Logged rounds of a contextual bandit, validated on construction (OBP field names).

    Fields:
        action: (n,) logged action indices in [0, n_actions).
        reward: (n,) observed rewards.
        pscore: (n,) behaviour propensities π_b(a_i|x_i) (at the logged position), in (0, 1].
        n_actions: number of actions K.
        context: (n, d) context features, or None.
        position: (n,) slot indices in [0, len_list), or None for a single slot.
        len_list: number of slots (1 unless position-aware).
        action_context: (K, m) action features (e.g. OBD item features), or None.
        pi_b: behaviour action distribution (n, K) when known (synthetic data), else None.
        expected_reward: ground-truth q(x_i, a) (n, K) when known (synthetic data), else None.
        affinity: OBD user-item affinity matrix (n, K) when requested, else None.
    """

    action: IntArray
    reward: FloatArray
    pscore: FloatArray
    n_actions: int
    context: FloatArray | None = None
    position: IntArray | None = None
    len_list: int = 1
    action_context: FloatArray | None = None
    pi_b: FloatArray | None = None
    expected_reward: FloatArray | None = None
    affinity: FloatArray | None = None

    def __post_init__(self) -> None:
        if self.n_actions < 1 or self.len_list < 1:
            raise ValueError(f"n_actions/len_list: must be >= 1, got {self.n_actions}/{self.len_list}")
        set_ = object.__setattr__  # frozen: store the normalised arrays
        set_(self, "reward", as_float("reward", self.reward, 1))
        n = self.n_rounds
        if n == 0:
            raise ValueError("reward: no logged rounds")
        set_(self, "action", as_index("action", self.action, 1, upper=self.n_actions))
        set_(self, "pscore", as_probability("pscore", self.pscore, 1, positive=True))
        check_rows("action", self.action, n)
        check_rows("pscore", self.pscore, n)
        if self.position is not None:
            set_(self, "position", as_index("position", self.position, 1, upper=self.len_list))
            check_rows("position", self.position, n)
        for name in ("context", "affinity", "expected_reward"):
            if getattr(self, name) is not None:
                set_(self, name, as_float(name, getattr(self, name), 2))
                check_rows(name, getattr(self, name), n)
        if self.action_context is not None:
            set_(self, "action_context", as_float("action_context", self.action_context, 2))
            check_rows("action_context", self.action_context, self.n_actions)
        if self.pi_b is not None:
            set_(self, "pi_b", as_probability("pi_b", self.pi_b, 2, positive=False))
            check_rows("pi_b", self.pi_b, n)
            check_distribution("pi_b", self.pi_b, axis=1)
        for name in ("pi_b", "expected_reward", "affinity"):
            arr = getattr(self, name)
            if arr is not None and arr.shape[1] != self.n_actions:
                raise ValueError(
                    f"{name}: expected {self.n_actions} columns (one per action), got {arr.shape}"
                )

    @property
    def n_rounds(self) -> int:
        return int(self.reward.shape[0])

    def split(self, test_size: float = 0.3) -> tuple[LoggedBanditFeedback, LoggedBanditFeedback]:
        """Time split: the first int(n·(1 − test_size)) rounds train, the rest test (OBP's rule)."""
        if not 0 < test_size < 1:
            raise ValueError(f"test_size: must be in (0, 1), got {test_size}")
        cut = int(self.n_rounds * (1.0 - test_size))
        if not 0 < cut < self.n_rounds:
            raise ValueError(f"test_size: {test_size} leaves an empty part of {self.n_rounds} rounds")
        return self._take(slice(0, cut)), self._take(slice(cut, None))

    def _take(self, rows: slice) -> LoggedBanditFeedback:
        def cut(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[rows]

        return LoggedBanditFeedback(
            action=self.action[rows],
            reward=self.reward[rows],
            pscore=self.pscore[rows],
            n_actions=self.n_actions,
            context=cut(self.context),
            position=cut(self.position),
            len_list=self.len_list,
            action_context=self.action_context,
            pi_b=cut(self.pi_b),
            expected_reward=cut(self.expected_reward),
            affinity=cut(self.affinity),
        )
