"""ReMix (arXiv 2507.06892): mix-policy proximal gradient, KL-Convex constraint, policy reincarnation.

Tensor mapping: the policy that generated a (possibly replayed) batch, pi_{k-i}, is ``behav_logp``;
the policy at the start of iteration k, pi_k, is ``prox_logp``. Then ``w_disc = pi_k / pi_{k-i}`` is
ReMix's band centre and ``r_stale = pi_theta / pi_k``; fresh data has ``behav_logp = prox_logp``
(centre 1). With ``r = pi_theta/pi_{k-i} = w r_stale``:

    -min(r A, clip(r, w - eps, w + eps) A) = w * PPOclip(r_stale; 1 - eps/w, 1 + eps/w)

so the objective returns the ``r_stale`` factor and ``compute`` (``correction="none"``) applies ``w``.

The learner side (:class:`ratiolab.learner.lm.LMLearner` with ``algo.remix``) keeps the replay window
(:mod:`ratiolab.learner.replay`), re-scores a replayed batch's ``prox_logp`` with the iteration-start
weights, makes ``utd`` passes per batch, passes ``prev_logp`` (log-probs under the previous iteration's
weights, pi_{k-1}) and swaps the KL base for the current weights at reincarnation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ratiolab import correction, kl
from ratiolab.masked import as_metric, masked_frac, masked_mean
from ratiolab.objectives.core import OBJECTIVES
from ratiolab.objectives.state import ObjectiveState
from ratiolab.types import PolicyLossInputs

CENTRES = ("ratio", "one")


def kl_convex_lambda(step: int) -> float:
    """``lambda(t) = max(1 - 0.1 ceil(max(t - 50, 0) / 10), 0.5)``: weight of KL(pi_theta || pi_base)."""
    if step < 0:
        raise ValueError(f"remix: step must be >= 0, got {step}")
    return max(1.0 - 0.1 * math.ceil(max(step - 50, 0) / 10), 0.5)


@dataclass
class RemixState(ObjectiveState):
    """Global step ``t`` and the reincarnation schedule.

    ``update`` advances ``t`` (the learner calls it once per batch, not per optimiser step); at
    ``t == reincarnation_step`` it sets ``reincarnated``: the learner
    then replaces the KL base (``ref_logp``'s model) with the current weights, stops replaying past
    batches (``replay_prob`` becomes 0) and continues plain on-policy training. ``t`` never restarts.
    """

    METHOD = "remix"
    step: int = 0
    reincarnation_step: int = 50
    replay_prob_before: float = 0.4
    reincarnated: bool = False

    def __post_init__(self) -> None:
        if self.reincarnation_step < 0:
            raise ValueError(f"remix: reincarnation_step must be >= 0, got {self.reincarnation_step}")
        if not 0.0 <= self.replay_prob_before < 1.0:
            raise ValueError(f"remix: replay_prob must be in [0, 1), got {self.replay_prob_before}")

    @property
    def replay_prob(self) -> float:
        """Probability of drawing a past batch (from the window) instead of a fresh one."""
        return 0.0 if self.reincarnated else self.replay_prob_before

    def update(self, metrics: dict[str, float]) -> None:
        self.step += 1
        if self.step >= self.reincarnation_step:
            self.reincarnated = True


def make_remix_state(*, reincarnation_step: int = 50, replay_prob: float = 0.4, **_: object) -> RemixState:
    return RemixState(reincarnation_step=reincarnation_step, replay_prob_before=replay_prob)


@OBJECTIVES.register(
    "remix", arxiv="2507.06892", summary="mix-policy PPO with a band centred at pi_k/pi_{k-i} + KL-Convex",
    inputs=("prev_logp",), parts=("replay",), state=make_remix_state,
)
def remix(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    eps: float = 0.2,
    clip_centre: str = "ratio",
    beta: float = 0.0,
    step: int = 0,
    state: RemixState | None = None,
    prev_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``L = -min(r A, clip(r, c - eps, c + eps) A) + beta KLC``, ``KLC = lam(t) k3(base) + (1 - lam(t)) k3(prev)``.

    [secondary source] formulas; constants [unverified]. ``c = pi_k/pi_{k-i}`` (``clip_centre="ratio"``)
    or 1 (``"one"``: the superseded reading, plain PPO on ``r_stale``). KL-Convex [inferred] per token
    with k3: the base is ``ref_logp`` and the precedent model pi_{k-1} is ``prev_logp`` (``[B, T]``
    log-probs under the previous iteration's weights, from the learner; without it ``prox_logp``, the
    iteration-start policy, stands in); it is divided by ``w_disc`` so that
    ``compute``'s ``w`` multiplies only the PPG term. ``beta`` defaults to 0 so that the objective runs
    without a reference; the ReMix recipe is ``beta=0.001`` with ``ref_logp``. ``t`` comes from
    ``state.step`` (or ``step`` without a state). Entropy bonus: the common ``entropy_coef`` (c = 0).
    """
    if not eps > 0:
        raise ValueError(f"remix: eps must be > 0, got {eps}")
    if clip_centre not in CENTRES:
        raise ValueError(f"remix: clip_centre must be one of {CENTRES}, got {clip_centre!r}")
    if beta < 0:
        raise ValueError(f"remix: beta must be >= 0, got {beta}")
    t = step if state is None else state.step
    lam = kl_convex_lambda(t)
    adv, mask = inputs.adv, inputs.mask
    w, _ = correction.decompose(inputs)
    width = eps / w if clip_centre == "ratio" else torch.full_like(w, eps)
    r = log_r.exp()
    unclipped = -adv * r
    clipped = -adv * torch.clamp(r, min=1.0 - width, max=1.0 + width)
    loss = torch.maximum(unclipped, clipped)
    metrics = {"clip_frac": masked_frac((clipped > unclipped).detach(), mask),
               "remix/kl_convex_lambda": as_metric(lam, mask), "remix/centre_mean": masked_mean(w, mask)}
    if beta:
        if inputs.ref_logp is None:
            raise ValueError("remix: beta > 0 needs inputs.ref_logp (log-probs of the KL-Convex base model)")
        kl_base = kl.estimate("k3", inputs.logp, inputs.ref_logp)
        kl_prev = kl.estimate("k3", inputs.logp, inputs.prox_logp if prev_logp is None else prev_logp)
        kl_convex = lam * kl_base + (1.0 - lam) * kl_prev
        metrics["remix/kl_convex"] = masked_mean(kl_convex.detach(), mask)
        loss = loss + beta * kl_convex / w
    return loss, metrics
