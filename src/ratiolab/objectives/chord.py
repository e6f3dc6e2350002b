"""CHORD: on-policy RL plus off-policy expert SFT under a step schedule (arXiv 2508.11408).

``L = (1 - mu(step)) L_RL + mu(step) L_SFT`` (docs/methods/rlhf.md §3, [verified: code] Trinity-RFT
``chord_policy_loss``). ``L_RL`` is the PPO clipped loss on the rollout rows, token-mean; ``L_SFT`` the
token-mean negative log-likelihood of the expert (demonstration) tokens, each weighted by ``sg[phi(p)]``,
``phi(p) = p (1 - p)`` (``sft_weighting = "phi"``, CHORD-phi), ``sg[p]`` (``"is"``) or 1 (``"none"``,
CHORD-mu), with ``p = exp(logp)``. Each sub-loss averages over its own subset of the minibatch.

The registered objective ``chord`` gives the ``(1 - mu) L_RL`` part over the rollout batch; its learner part
``expert_sft`` (:mod:`ratiolab.learner.expert`) adds ``mu L_SFT`` over the minibatch's demonstrations and
hands the objective the learner's ``step`` (batches trained so far).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ratiolab.objectives.core import OBJECTIVES
from ratiolab.objectives.ppo import ppo
from ratiolab.types import PolicyLossInputs

SftWeighting = Literal["phi", "is", "none"]
WEIGHTINGS: tuple[str, ...] = ("phi", "is", "none")


@dataclass(frozen=True)
class MuSchedule:
    """CHORD's SFT weight over steps s: warm-up ``w``, cosine decay over ``d`` steps from ``peak`` to ``valley``.

    ``mu = (s / w) peak`` for ``s < w``; ``valley`` for ``s >= w + d``; otherwise
    ``(peak - valley) 0.5 (1 + cos(pi (s - w) / d)) + valley``. The defaults (``w = d = 0``, ``peak = valley =
    0.1``) are Trinity-RFT's class defaults: a constant 0.1 (the CHORD-phi preset).
    """

    warmup: int = 0
    decay: int = 0
    peak: float = 0.1
    valley: float = 0.1

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.decay < 0:
            raise ValueError(f"chord: mu_warmup = {self.warmup} and mu_decay = {self.decay} must be >= 0")
        for name, v in (("mu_peak", self.peak), ("mu_valley", self.valley)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"chord: {name} = {v} must lie in [0, 1] (the SFT share of the loss)")

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> MuSchedule:
        """The schedule of resolved ``chord`` parameters (``mu_warmup``, ``mu_decay``, ``mu_peak``, ``mu_valley``)."""
        return cls(int(params["mu_warmup"]), int(params["mu_decay"]), float(params["mu_peak"]),
                   float(params["mu_valley"]))

    def __call__(self, step: int) -> float:
        w, d = self.warmup, self.decay
        if step < w:
            return step / w * self.peak
        if step >= w + d:
            return self.valley
        return (self.peak - self.valley) * 0.5 * (1.0 + math.cos(math.pi * (step - w) / d)) + self.valley


def sft_loss(
    logp: torch.Tensor, mask: torch.Tensor, weighting: str = "phi", num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_t m_t (-logp_t) sg[w(p_t)] / N`` over expert tokens, ``N = num_tokens`` (default ``sum m``).

    ``w = p (1 - p)`` (``phi``), ``p`` (``is``) or 1 (``none``), ``p = exp(logp)``; ``N`` is the minibatch's
    expert-token count, so micro-batch losses sum to the minibatch's token mean.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"chord: sft_weighting = {weighting!r} is not one of {list(WEIGHTINGS)}")
    p = logp.detach().exp()
    weight = {"phi": p * (1.0 - p), "is": p, "none": torch.ones_like(p)}[weighting]
    n = mask.sum().clamp(min=1.0) if num_tokens is None else num_tokens
    loss = (-logp * weight * mask).sum() / n
    metrics = {"sft/weight_mean": ((weight * mask).sum() / mask.sum().clamp(min=1.0)).detach()}
    return loss, metrics


def mix(rl_loss: torch.Tensor | float, sft: torch.Tensor | float, mu: float) -> torch.Tensor | float:
    """``(1 - mu) L_RL + mu L_SFT``."""
    return (1.0 - mu) * rl_loss + mu * sft


@OBJECTIVES.register("chord", arxiv="2508.11408", inputs=("step",), parts=("expert_sft",),
                     summary="(1 - mu) PPO-clip on rollouts + mu phi-weighted SFT on demonstrations, mu scheduled")
def chord(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    step: int = 0,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    mu_warmup: int = 0,
    mu_decay: int = 0,
    mu_peak: float = 0.1,
    mu_valley: float = 0.1,
    sft_weighting: SftWeighting = "phi",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The ``(1 - mu(step)) l_PPO`` per-token part of CHORD (see the module docstring); the learner part
    ``expert_sft`` adds ``mu(step) L_SFT`` with ``sft_weighting``. ``step``: batches trained so far."""
    if sft_weighting not in WEIGHTINGS:
        raise ValueError(f"chord: sft_weighting = {sft_weighting!r} is not one of {list(WEIGHTINGS)}")
    mu = MuSchedule(mu_warmup, mu_decay, mu_peak, mu_valley)(step)
    loss, metrics = ppo(inputs, log_r, clip_low=clip_low, clip_high=clip_high)
    metrics["chord/mu"] = torch.tensor(mu, device=loss.device)
    return (1.0 - mu) * loss, metrics


OBJECTIVES.add(
    "chord_mu", chord, arxiv="2508.11408", inputs=("step",), parts=("expert_sft",),
    summary="CHORD-mu: mu cosine-decays 0.9 -> 0.05 over 200 steps, unweighted SFT",
    fixed={"mu_warmup": 0, "mu_decay": 200, "mu_peak": 0.9, "mu_valley": 0.05, "sft_weighting": "none"},
)
