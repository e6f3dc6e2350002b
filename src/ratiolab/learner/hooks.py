"""Learner hooks: the extension points through which an objective's learner parts join the LM update.

A registry entry (an objective, or an advantage estimator: ``gae``'s ``("value_head",)``) names the parts its
method runs with (``Entry.parts``, e.g. ``("critic",)``); each part is
a :class:`LearnerHook` subclass registered under that name with :func:`register_hook`. The learner makes
one instance per part (``cls(learner)``) and calls every hook at the points below; a hook overrides only
the points it needs (the defaults do nothing). The learner itself names no part and no method.

Hook points, in the order of one batch:

- ``state_params(algo)`` (class method, before the objective state is made): parameters the hook's own
  config section adds to the state factory's (ReMix's schedule from ``algo.remix``).
- ``score(exp, prox_logp, adv)``: score the batch instead of the learner (``None``: the learner scores).
- ``replay(generator)``: a past batch to train on instead of the fresh one (``None``: the fresh one).
- ``remember(s)``: see every scored batch the loop trains on.
- ``before_update(s)``: at the start of ``update``; returns the (possibly extended) scored batch.
- ``passes(epochs)``: how many passes over the batch ``update`` makes (default ``epochs``).
- per optimiser step: ``extra_pass(s, micros, counts, step)``, a gradient pre-pass whose returned
  parameters go to the objective (metrics into ``step``); ``loss_pass()``, a context manager around the
  step's loss passes; per micro-batch ``loss_inputs(s, micro)``, extra objective inputs, and
  ``extra_loss(s, micro, num_seqs, metrics)``, a loss added to the objective's before ``backward``;
  ``before_step()``, after the backward passes and the policy's gradient clip, before ``optimizer.step``
  (metrics).
- ``after_batch(s, metrics, n_steps)``: after the batch's optimiser steps (metrics).
- ``state_dict()`` / ``load_state_dict(state)``: checkpointed under ``state_key`` (``None``: no state).

Three class attributes tell the learner what a hook changes: ``reuses_forward`` (the on-policy shortcut,
``prox_logp`` from the update's own forward, stays valid; default ``False``), ``advances_state`` (the
hook advances the objective state itself, so the learner does not call ``state.update`` per optimiser
step; default ``False``) and ``wants_demonstrations`` (the sampler adds each problem's teacher-forced
demonstration, ``Experience.expert``; default ``False``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ratiolab.config.train import AlgoConfig
from ratiolab.rollout import Experience

if TYPE_CHECKING:
    from ratiolab.learner.lm import LMLearner


@dataclass
class Scored:
    """Experience plus the learner-side tensors of the batch (``[B, T]`` unless noted)."""

    exp: Experience
    input_ids: torch.Tensor
    attention: torch.Tensor
    start: int
    mask: torch.Tensor
    prox_logp: torch.Tensor
    ref_logp: torch.Tensor | None
    adv: torch.Tensor
    #: old logits recomputed from each forward of the current policy (A-3PO strategies), else ``prox_logp``
    prox_follow: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: ReMix: drawn from the replay window; log-probs under pi_{k-1} (KL-Convex)
    replayed: bool = False
    prev_logp: torch.Tensor | None = None
    #: value targets and values at scoring: ``[B]`` (SAFE critic) or ``[B, T]`` (the value head of GAE/EGAE)
    value_target: torch.Tensor | None = None
    old_value: torch.Tensor | None = None
    #: MDPO's analytic KL: ``[B, T, V]`` full log-softmax of the old policy (None: not asked for)
    prox_full: torch.Tensor | None = None
    #: on-policy shortcut: ``prox_logp`` is filled from the (detached) training forward of the update
    prox_from_update: bool = False


class LearnerHook:
    """Base class of a learner part: every hook point does nothing (see the module docstring)."""

    #: the checkpoint key of the hook's state (``None``: it has none)
    state_key: ClassVar[str | None] = None
    reuses_forward: bool = False
    advances_state: ClassVar[bool] = False
    wants_demonstrations: ClassVar[bool] = False

    def __init__(self, learner: LMLearner) -> None:
        self.learner = learner

    @classmethod
    def state_params(cls, algo: AlgoConfig) -> dict[str, Any]:
        return {}

    def score(self, exp: Experience, prox_logp: torch.Tensor | None, adv: torch.Tensor | None) -> Scored | None:
        return None

    def replay(self, generator: torch.Generator) -> Scored | None:
        return None

    def remember(self, s: Scored) -> None:
        return None

    def before_update(self, s: Scored) -> Scored:
        return s

    def passes(self, epochs: int) -> int:
        return epochs

    def extra_pass(
        self, s: Scored, micros: tuple[torch.Tensor, ...], counts: tuple[float, float],
        step: dict[str, torch.Tensor | float],
    ) -> dict[str, Any]:
        return {}

    def loss_pass(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def loss_inputs(self, s: Scored, micro: torch.Tensor) -> dict[str, Any]:
        return {}

    def extra_loss(
        self, s: Scored, micro: torch.Tensor, num_seqs: float, metrics: dict[str, torch.Tensor | float]
    ) -> torch.Tensor | None:
        return None

    def before_step(self) -> dict[str, float]:
        return {}

    def after_batch(self, s: Scored, metrics: dict[str, float], n_steps: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


HOOKS: dict[str, type[LearnerHook]] = {}


def register_hook(part: str) -> Callable[[type[LearnerHook]], type[LearnerHook]]:
    """Class decorator: the hook of learner part ``part`` (the name registry entries list in ``parts``)."""

    def deco(cls: type[LearnerHook]) -> type[LearnerHook]:
        if part in HOOKS:
            raise ValueError(f"learner part {part!r} already has the hook {HOOKS[part].__name__}")
        HOOKS[part] = cls
        return cls

    return deco


def hook_types(objective: str, parts: tuple[str, ...]) -> list[type[LearnerHook]]:
    """The hook classes of ``parts`` (objective ``objective``'s ``Entry.parts``), in order."""
    unknown = [p for p in parts if p not in HOOKS]
    if unknown:
        raise ValueError(f"objective {objective!r} runs with learner part(s) {unknown} that no hook registers; "
                         f"registered parts: {', '.join(sorted(HOOKS))}")
    return [HOOKS[p] for p in parts]


def state_keys() -> Iterator[str]:
    """The checkpoint keys of every registered hook with state."""
    return iter(sorted({k for cls in HOOKS.values() if (k := cls.state_key) is not None}))
