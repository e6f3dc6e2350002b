"""PPO-EWMA (revised and original) and decoupled PPO: PPO-clip on ``r_stale`` with the weight ``compute`` applies.

Each loss is ``w_disc * PPOclip(r_stale)`` times a method-specific 0/1 or cap factor, so the
objective returns only the ``r_stale`` part and ``compute`` multiplies by ``w_disc`` once: keep the
default ``correction="none"`` to reproduce the paper losses (``ignore`` drops the behaviour weight,
e.g. the revised method's ``mask_only`` variant; ``truncate``/``mask`` add a correction on top).
Every objective here reports ``active_frac``, the share of valid tokens neither dropped by the
method's own discrepancy rule nor on the clipped branch (the EWMA reset statistic).
The EWMA presets declare ``binds_old_logits="ewma"``: that strategy must produce their ``prox_logp``
(``decoupled_ppo`` runs with any).
"""

from __future__ import annotations

import math

import torch

from ratiolab import correction
from ratiolab.masked import masked_frac
from ratiolab.objectives.core import OBJECTIVES
from ratiolab.objectives.ppo import ppo
from ratiolab.registry import REQUIRED
from ratiolab.types import PolicyLossInputs


def active_frac(
    loss: torch.Tensor, inputs: PolicyLossInputs, log_r: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """Share of valid tokens kept by ``keep`` and on the unclipped branch (``loss == -A r_stale``).

    A token both dropped and clipped counts once. ``loss`` is the PPO-clip per-token loss before
    ``keep`` applies; dual-clipped tokens are off the unclipped branch too.
    """
    unclipped = loss.detach() == (-inputs.adv * log_r.detach().exp())
    return masked_frac(keep & unclipped, inputs.mask)


@OBJECTIVES.register(
    "ppo_ewma",
    arxiv="2605.12070",
    summary="revised PPO-EWMA: tokens with w_disc outside [1/c, c] dropped, w_disc * PPOclip(pi/pi_ewma)",
    binds_old_logits="ewma",
)
def ppo_ewma(
    inputs: PolicyLossInputs, log_r: torch.Tensor, *, clip_low: float = 0.2, clip_high: float = 0.2,
    disc_band: float = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Revised PPO-EWMA ([secondary source] structure; r_d as weight and mask [inferred]), ``prox_logp`` from
    the ``ewma`` strategy (beta = W / (W + 2), reset when ``active_frac`` < tau).

    ``r_d = sg(exp(prox - behav))``, ``m_d = 1[1/c <= r_d <= c]`` with ``c = disc_band``;
    ``loss = token-mean over valid tokens of m_d r_d PPOclip(r_stale; 1 - clip_low, 1 + clip_high)``
    (dropped tokens stay in the denominator). The objective returns ``m_d PPOclip``; ``compute``
    applies ``r_d`` (``correction="ignore"``: the ``mask_only`` variant). ``active_frac`` =
    share of valid tokens with ``m_d = 1`` on the unclipped branch (a ``correction`` mask added on top is
    not counted in it). Worked example (c = 1.25): −0.163050.
    """
    if not disc_band > 1.0:
        raise ValueError(f"ppo_ewma: disc_band (c of the band [1/c, c] on w_disc) must be > 1, got {disc_band}")
    loss, metrics = ppo(inputs, log_r, clip_low=clip_low, clip_high=clip_high)
    w_disc = correction.discrepancy_weight(inputs)
    keep = (w_disc >= 1.0 / disc_band) & (w_disc <= disc_band)
    metrics["ppo_ewma/disc_mask_frac"] = masked_frac(~keep, inputs.mask)
    metrics["active_frac"] = active_frac(loss, inputs, log_r, keep)
    return loss * keep.to(loss.dtype), metrics


@OBJECTIVES.register(
    "ppo_ewma_original",
    arxiv="2110.00641",
    summary="PPO-EWMA (Hilton et al.): w_disc * PPOclip(pi/pi_ewma), total ratio capped at IS_max",
    binds_old_logits="ewma",
    old_logit_defaults={"beta": REQUIRED, "reset_tau": 0.0},  # the original: a chosen decay, no reset
)
def ppo_ewma_original(
    inputs: PolicyLossInputs, log_r: torch.Tensor, *, clip: float = 0.2, is_max: float = 100.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Hilton et al. PPO-EWMA loss ([verified: code] openai/ppo-ewma), ``prox_logp`` from the EWMA weights.

    ``logmu_adj = max(logmu, sg(logp) - log IS_max)``;
    ``loss = max(-A exp(logp - logmu_adj), -A exp(clip(logp - prox, log(1-eps), log(1+eps)) + prox - logmu_adj))``
    which equals ``w_eff * PPOclip(r_stale)`` with ``w_eff = min(w_disc, IS_max / sg(r_stale))``.
    The objective returns ``PPOclip * min(1, IS_max / sg(w_disc r_stale))``; ``compute`` applies
    ``w_disc`` (value and gradient match the original, cap active or not). Worked example: −0.259209.
    Runs with the ``ewma`` strategy and an explicit ``async_rl.ewma_beta``, without the reset.
    """
    if not 0.0 < clip < 1.0:
        raise ValueError(f"ppo_ewma_original: clip must be in (0, 1), got {clip}")
    if not is_max > 1.0:
        raise ValueError(f"ppo_ewma_original: is_max must be > 1 (cap on pi_theta / mu), got {is_max}")
    loss, metrics = ppo(inputs, log_r, clip_low=clip, clip_high=clip)
    log_w = torch.zeros_like(log_r) if inputs.behav_logp is None else correction.log_ratio(
        inputs.prox_logp, inputs.behav_logp)
    log_total = log_w + log_r.detach()
    cap = torch.exp((math.log(is_max) - log_total).clamp(max=0.0))
    metrics["ppo_ewma/is_cap_frac"] = masked_frac(log_total > math.log(is_max), inputs.mask)
    metrics["active_frac"] = active_frac(loss, inputs, log_r, torch.ones_like(inputs.mask, dtype=torch.bool))
    return loss * cap, metrics


@OBJECTIVES.register(
    "decoupled_ppo",
    arxiv="2110.00641",
    summary="decoupled PPO (AReaL form): w_disc * PPOclip(pi/pi_prox), tokens with w_disc > cap dropped",
)
def decoupled_ppo(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip_c: float | None = None,
    behav_imp_weight_cap: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``loss = sum_t m w pg_t / sum m``, ``pg = PPOclip(r_stale)``, ``w = pi_prox/mu`` ([verified: code] AReaL).

    ``w := 0`` where ``w > behav_imp_weight_cap`` (cap > 1; ``None`` = no cap): the objective zeroes
    those tokens, ``compute`` multiplies by ``w_disc``; the denominator stays all valid tokens.
    Runs with any old-logit strategy: AReaL recomputes ``prox_logp`` with the learner at batch start
    (``recompute``, which entangles staleness into ``w``); the default ``snapshot`` is exact.
    """
    if behav_imp_weight_cap is not None and not behav_imp_weight_cap > 1.0:
        raise ValueError(f"decoupled_ppo: behav_imp_weight_cap must be > 1 or None, got {behav_imp_weight_cap}")
    loss, metrics = ppo(inputs, log_r, clip_low=clip_low, clip_high=clip_high, dual_clip_c=dual_clip_c)
    keep = torch.ones_like(inputs.mask, dtype=torch.bool)
    if behav_imp_weight_cap is not None and inputs.behav_logp is not None:
        keep = correction.discrepancy_weight(inputs) <= behav_imp_weight_cap
        metrics["decoupled_ppo/behav_cap_frac"] = masked_frac(~keep, inputs.mask)
    metrics["active_frac"] = active_frac(loss, inputs, log_r, keep)
    return loss * keep.to(loss.dtype), metrics
