"""A versioned sample store that bounds staleness (DESIGN §1: staleness = learner_version - version).

Items are batches of experience, each tagged with the oldest policy version among its valid
tokens. ``get`` hands the learner an item only if ``learner_version - item.min_version <=
max_staleness``; the bound is never violated. Two policies keep it:

- ``wait``: producers call :meth:`wait_for_room` before generating; it blocks while a batch
  started now could not be consumed within the bound (so nothing is ever dropped);
- ``drop``: producers never wait; items that are too stale when the learner asks (or that
  overflow the ``max_staleness + 1`` slots) are discarded and counted.

Every item carries a unique ``uid``; ``stats`` counts what was put, consumed and dropped, so
that a restarted producer can be checked for lost or duplicated samples.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

Policy = Literal["drop", "wait"]


class Versioned(Protocol):
    uid: int

    @property
    def min_version(self) -> int: ...


T = TypeVar("T", bound=Versioned)


@dataclass
class BufferStats:
    put: int = 0
    consumed: int = 0
    dropped_stale: int = 0
    dropped_overflow: int = 0
    max_staleness_seen: int = 0
    consumed_uids: list[int] = field(default_factory=list)


class StalenessError(RuntimeError):
    """Raised if an item would be handed out beyond the bound (a bug, never expected)."""


class VersionedBuffer(Generic[T]):
    """Thread-safe FIFO of versioned items with a staleness bound."""

    def __init__(self, max_staleness: int, policy: Policy = "wait") -> None:
        if isinstance(max_staleness, bool) or not isinstance(max_staleness, int) or max_staleness < 0:
            raise ValueError(
                f"max_staleness = {max_staleness!r} must be a non-negative integer (0 = on-policy); fix the value"
            )
        if policy not in ("drop", "wait"):
            raise ValueError(f"staleness policy {policy!r} is not one of ['drop', 'wait']")
        self.max_staleness = max_staleness
        self.policy: Policy = policy
        self.stats = BufferStats()
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._learner_version = 0
        self._learner_busy = False
        self._closed = False

    # learner side --------------------------------------------------------------------------------
    def set_learner(self, version: int, busy: bool) -> None:
        """Tell producers the learner's version and whether it is inside an update."""
        with self._cond:
            self._learner_version, self._learner_busy = version, busy
            self._cond.notify_all()

    def get(self, learner_version: int, timeout: float | None = None) -> T | None:
        """The oldest item within the bound at ``learner_version`` (blocking); ``None`` on close/timeout.

        Handing out an item marks the learner busy (atomically), until ``set_learner`` says otherwise.
        """
        with self._cond:
            while True:
                while self._items:
                    item = self._items.popleft()
                    staleness = learner_version - item.min_version
                    if staleness <= self.max_staleness:
                        # the learner is busy with this item from now on: producers must count it
                        # (otherwise a producer checking between get() and set_learner(busy=True)
                        # would under-estimate the consumption version by one)
                        self._learner_version, self._learner_busy = learner_version, True
                        self.stats.consumed += 1
                        self.stats.consumed_uids.append(item.uid)
                        self.stats.max_staleness_seen = max(self.stats.max_staleness_seen, staleness)
                        self._cond.notify_all()
                        return item
                    if self.policy == "wait":
                        raise StalenessError(
                            f"item {item.uid} has staleness {staleness} > max_staleness {self.max_staleness} "
                            "under the wait policy"
                        )
                    self.stats.dropped_stale += 1
                if self._closed or not self._cond.wait(timeout):
                    return None

    # producer side -------------------------------------------------------------------------------
    def wait_for_room(
        self, engine_version: Callable[[], int], stop: threading.Event | None = None,
        poll: Callable[[], None] | None = None,
    ) -> bool:
        """Under ``wait``: block until a batch started at ``engine_version`` can be consumed in bound.

        The batch will be consumed at learner version ``v + pending + busy`` (the learner first
        finishes its current update and the items ahead of it), so the producer waits while that
        exceeds ``engine_version() + max_staleness``. ``poll`` runs every 50 ms while waiting (the
        producer syncs its weights there). Returns ``False`` if stopped or closed.
        """
        while not self._closed and not (stop is not None and stop.is_set()):
            if poll is not None:
                poll()
            with self._cond:
                eta = self._learner_version + len(self._items) + int(self._learner_busy)
                if self.policy == "drop" or eta - engine_version() <= self.max_staleness:
                    return True
                self._cond.wait(0.05)
        return False

    def put(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self.stats.put += 1
            if self.policy == "drop":
                while len(self._items) > self.max_staleness + 1:
                    self._items.popleft()
                    self.stats.dropped_overflow += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def live_min_version(self) -> int | None:
        """Oldest version referenced by a buffered item (``None`` if empty)."""
        with self._cond:
            return min((i.min_version for i in self._items), default=None)

    def items(self) -> list[T]:
        """A snapshot of the buffered items (for scoring strategies that touch them in place)."""
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
