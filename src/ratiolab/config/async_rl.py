"""Configuration of the asynchronous actor/learner system (``TrainConfig.async_rl``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ratiolab.config import ConfigError
from ratiolab.correction.old_logits import STRATEGIES
from ratiolab.objectives import OBJECTIVES
from ratiolab.registry import REQUIRED

#: Old-logit strategies that score buffered batches inside the rollout actor (actor and buffer in one process).
ACTOR_SIDE_STRATEGIES = ("old_logit_model", "sync_interrupt")
#: Old-logit strategies the synchronous loop also runs (``async_rl.old_logits`` with ``enabled = false``): every
#: token there has staleness 0, so ``recompute`` is the loop's own scoring pass and ``behavior`` replaces it by the
#: engine's log-probs (exact up to the engine's numerics when it samples in the learner's precision).
SYNC_STRATEGIES = ("recompute", "behavior")


@dataclass(frozen=True)
class AsyncConfig:
    """Asynchronous training (arXiv 2605.12070; decoupled PPO / PPO-EWMA, arXiv 2110.00641).

    ``enabled``: run rollout actor(s) and learner concurrently. ``max_staleness``: the largest
    ``learner_version - token_version`` a trained token may have, enforced at the buffer with
    ``staleness_policy`` (``wait``: actors pause; ``drop``: stale batches are discarded).
    ``old_logits``: where ``prox_logp`` comes from (see :mod:`ratiolab.correction.old_logits`);
    ``auto`` takes the strategy the objective binds (``ppo_ewma`` and ``ppo_ewma_original`` -> ``ewma``,
    its registry entry's ``binds_old_logits``), else ``snapshot`` (``decoupled_ppo``
    runs with any strategy; AReaL's own form is ``recompute``). ``ewma_beta``: the EWMA decay (``None``:
    ``W / (W + 2)`` with ``W = max_staleness``, unless the objective's ``old_logit_defaults`` says it has no
    default, as ``ppo_ewma_original``: then it must be set). ``ewma_reset_tau``: reset the EWMA when the
    active fraction falls below it (``None``: 0.9, or the objective's ``old_logit_defaults`` value, 0 for
    ``ppo_ewma_original``; 0 never resets). A bound strategy's parameter ``p`` is the field ``{strategy}_{p}``.
    Without ``enabled`` only :data:`SYNC_STRATEGIES` may be set: ``behavior`` skips the synchronous loop's
    scoring forward. ``partial_rollouts``: a weight update may land mid-generation (tokens record both versions).
    ``backend``: where the rollout actor runs. ``local`` (default) or ``threads``: a thread of this
    process; ``process``: a child process (weights in shared memory), for generation-heavy
    multi-turn tasks; it costs ~5 s to start (measurements in :mod:`ratiolab.learner.backends.process`,
    ``benchmarks/bench_async.py``); ``ray``: actors on a Ray cluster at
    ``ray_address`` (``None`` starts a local one). ``old_logit_model`` and ``sync_interrupt``
    score inside the actor and need the thread (:data:`ACTOR_SIDE_STRATEGIES`).
    ``max_restarts``: a crashed rollout actor is restarted at most that many times within any
    ``restart_window`` consecutive batches (``0``: within the whole run); one more crash ends the run.
    ``actor_delay``/``learner_delay`` slow one side down by that many seconds per decode step / per
    update (for tests and experiments).
    """

    enabled: bool = False
    max_staleness: int = 2
    staleness_policy: Literal["drop", "wait"] = "wait"
    old_logits: str = "auto"
    partial_rollouts: bool = True
    ewma_beta: float | None = None
    ewma_reset_tau: float | None = None
    backend: Literal["local", "threads", "process", "ray"] = "local"
    ray_address: str | None = None
    max_restarts: int = 3
    restart_window: int = 100
    actor_delay: float = 0.0
    learner_delay: float = 0.0

    def validate(self) -> None:
        if isinstance(self.max_staleness, bool) or self.max_staleness < 0:
            raise ConfigError(
                f"async_rl.max_staleness = {self.max_staleness!r} must be a non-negative integer (0 = on-policy)"
            )
        if self.old_logits != "auto" and self.old_logits not in STRATEGIES:
            raise ConfigError(f"async_rl.old_logits = {self.old_logits!r} is not one of {['auto', *STRATEGIES]}")
        if self.ewma_beta is not None and not 0.0 <= self.ewma_beta < 1.0:
            raise ConfigError(f"async_rl.ewma_beta = {self.ewma_beta!r} must be in [0, 1) (None: W / (W + 2))")
        if self.ewma_reset_tau is not None and not 0.0 <= self.ewma_reset_tau <= 1.0:
            raise ConfigError(
                f"async_rl.ewma_reset_tau = {self.ewma_reset_tau!r} must be in [0, 1] (0: never reset; None: default)"
            )
        for name in ("max_restarts", "restart_window"):
            if isinstance(getattr(self, name), bool) or getattr(self, name) < 0:
                raise ConfigError(f"async_rl.{name} = {getattr(self, name)!r} must be a non-negative integer")
        if self.actor_delay < 0 or self.learner_delay < 0:
            raise ConfigError("async_rl.actor_delay and async_rl.learner_delay must be >= 0 seconds")
        if self.backend in ("process", "ray") and self.old_logits in ACTOR_SIDE_STRATEGIES:
            raise ConfigError(
                f"async_rl.old_logits = {self.old_logits!r} scores tokens inside the rollout actor when a version "
                f"retires, which async_rl.backend={self.backend} does not support; use async_rl.old_logits=snapshot "
                "(also exact) or async_rl.backend=threads"
            )
        if self.ray_address is not None and self.backend != "ray":
            raise ConfigError("async_rl.ray_address is set but async_rl.backend is not 'ray'; set backend=ray")

    def strategy(self, objective: str) -> str:
        """The old-logit strategy that runs with ``objective`` (resolves ``auto``; see the class docstring)."""
        if self.old_logits == "auto":
            return bound_strategy(objective) or "snapshot"
        return self.old_logits

    def strategy_params(self, objective: str) -> dict[str, Any]:
        """Keyword arguments of the strategy that runs with ``objective`` (only ``ewma`` takes any)."""
        if self.strategy(objective) != "ewma":
            return {}
        tau = self.ewma_reset_tau
        if tau is None:
            tau = old_logit_defaults(objective).get("reset_tau", 0.9)
        return {"beta": self.ewma_beta, "reset_tau": tau}

    def check_binding(self, objective: str) -> None:
        """A preset that binds an old-logit strategy needs the asynchronous system and that strategy."""
        bound = bound_strategy(objective)
        if bound is None:
            return
        if not self.enabled:
            raise ConfigError(
                f"algo.objective = {objective!r} needs the proximal policy of old_logits={bound!r}, which the "
                "asynchronous system maintains; set async_rl.enabled=true (max_staleness=0 is on-policy)"
            )
        if self.strategy(objective) != bound:
            raise ConfigError(
                f"algo.objective = {objective!r} binds async_rl.old_logits={bound!r}, got {self.old_logits!r}; "
                f"set async_rl.old_logits=auto (or {bound})"
            )
        for param, default in old_logit_defaults(objective).items():
            name = f"{bound}_{param}"
            if default is REQUIRED and getattr(self, name) is None:
                raise ConfigError(
                    f"algo.objective = {objective!r} has no default async_rl.{name} (the {bound} strategy's "
                    f"{param}): set async_rl.{name}"
                )

    def resolved_backend(self) -> str:
        """``threads``, ``process`` or ``ray`` (``local`` is the thread backend; see the class docstring)."""
        return "threads" if self.backend == "local" else self.backend


def bound_strategy(objective: str) -> str | None:
    """The old-logit strategy ``objective`` declares it binds (``Entry.binds_old_logits``); ``None``: any, or
    not a registered objective (which :meth:`TrainConfig.validate` reports)."""
    return OBJECTIVES.get(objective).binds_old_logits if objective in OBJECTIVES else None


def old_logit_defaults(objective: str) -> dict[str, Any]:
    """The bound strategy's parameter defaults ``objective`` declares (``Entry.old_logit_defaults``)."""
    return dict(OBJECTIVES.get(objective).old_logit_defaults) if objective in OBJECTIVES else {}
