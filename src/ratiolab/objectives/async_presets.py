"""PPO-EWMA and AReaL decoupled PPO: PPO-clip on ``r_stale`` with the behaviour weight of ``compute``.

Both losses are ``w_disc * PPOclip(r_stale)`` (async-correction.md §5, §7), so the objective returns
only the ``r_stale`` factor (times a constant cap factor) and ``compute`` multiplies by ``w_disc``
once: keep the default ``correction="none"`` to reproduce the paper losses (``ignore`` drops the
behaviour weight; ``truncate``/``mask`` replace the methods' own caps). :data:`OLD_LOGITS_BINDING`
names the old-logit strategy each preset expects to produce ``prox_logp``.
"""

from __future__ import annotations

import math

import torch

from ratiolab import correction
from ratiolab.masked import masked_frac
from ratiolab.objectives.core import OBJECTIVES
from ratiolab.objectives.ppo import ppo
from ratiolab.types import PolicyLossInputs

#: objective -> the old-logit strategy (async-correction.md §3 names) that must produce its ``prox_logp``.
OLD_LOGITS_BINDING: dict[str, str] = {"ppo_ewma": "ewma", "decoupled_ppo": "snapshot"}


@OBJECTIVES.register(
    "ppo_ewma", arxiv="2110.00641", summary="PPO-EWMA: w_disc * PPOclip(pi/pi_ewma), total ratio capped at IS_max"
)
def ppo_ewma(
    inputs: PolicyLossInputs, log_r: torch.Tensor, *, clip: float = 0.2, is_max: float = 100.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Hilton et al. PPO-EWMA loss ([verified: code] openai/ppo-ewma), ``prox_logp`` from the EWMA weights.

    ``logmu_adj = max(logmu, sg(logp) - log IS_max)``;
    ``loss = max(-A exp(logp - logmu_adj), -A exp(clip(logp - prox, log(1-eps), log(1+eps)) + prox - logmu_adj))``
    which equals ``w_eff * PPOclip(r_stale)`` with ``w_eff = min(w_disc, IS_max / sg(r_stale))``.
    The objective returns ``PPOclip * min(1, IS_max / sg(w_disc r_stale))``; ``compute`` applies
    ``w_disc`` (value and gradient match the original, cap active or not). Worked example: −0.259209.
    """
    if not 0.0 < clip < 1.0:
        raise ValueError(f"ppo_ewma: clip must be in (0, 1), got {clip}")
    if not is_max > 1.0:
        raise ValueError(f"ppo_ewma: is_max must be > 1 (cap on pi_theta / mu), got {is_max}")
    loss, metrics = ppo(inputs, log_r, clip_low=clip, clip_high=clip)
    log_w = torch.zeros_like(log_r) if inputs.behav_logp is None else correction.log_ratio(
        inputs.prox_logp, inputs.behav_logp)
    log_total = log_w + log_r.detach()
    cap = torch.exp((math.log(is_max) - log_total).clamp(max=0.0))
    metrics["ppo_ewma/is_cap_frac"] = masked_frac(log_total > math.log(is_max), inputs.mask)
    return loss * cap, metrics


@OBJECTIVES.register(
    "decoupled_ppo",
    arxiv="2505.24298",
    summary="AReaL decoupled PPO: w_disc * PPOclip(pi/pi_prox), tokens with w_disc > cap dropped",
)
def decoupled_ppo(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip_c: float | None = None,
    behav_imp_weight_cap: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``loss = sum_t m w pg_t / sum m``, ``pg = PPOclip(r_stale)``, ``w = pi_prox/mu`` ([verified: code] AReaL).

    ``w := 0`` where ``w > behav_imp_weight_cap`` (cap > 1; ``None`` = no cap): the objective zeroes
    those tokens, ``compute`` multiplies by ``w_disc``; the denominator stays all valid tokens.
    """
    if behav_imp_weight_cap is not None and not behav_imp_weight_cap > 1.0:
        raise ValueError(f"decoupled_ppo: behav_imp_weight_cap must be > 1 or None, got {behav_imp_weight_cap}")
    loss, metrics = ppo(inputs, log_r, clip_low=clip_low, clip_high=clip_high, dual_clip_c=dual_clip_c)
    if behav_imp_weight_cap is not None and inputs.behav_logp is not None:
        w_disc, _ = correction.decompose(inputs)
        over = w_disc > behav_imp_weight_cap
        metrics["decoupled_ppo/behav_cap_frac"] = masked_frac(over, inputs.mask)
        loss = loss * (~over).to(loss.dtype)
    return loss, metrics
