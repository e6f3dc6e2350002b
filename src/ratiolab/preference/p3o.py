"""P3O: pairwise proximal policy optimisation (Wu, Zhu et al., arXiv 2310.00212; docs/methods/ratio-objectives.md §13).

Two sampled responses y1 (``chosen``), y2 (``rejected``) per prompt with rewards R1, R2. With sequence
log-ratios to the reference ``LR_i = sum_t mask (logp - ref_logp)(y_i)`` (gradient) and
``OLR_i = sum_t mask (prox_logp - ref_logp)(y_i)``:

    q = sg(R1 - R2 - kl_coef (LR1 - LR2))                         (trajectory KL folded into the reward)
    w = clamp(sg(exp((LR1 - OLR1) + (LR2 - OLR2))), 1/C, C)       (pair importance weight rho1 rho2)

``clip="joint"`` (the shipped configuration; "V2" [inferred]): with ``D = LR1 - LR2``, ``D_old = OLR1 - OLR2``

    l = max(-q w D, -q w clamp(D, D_old - eps, D_old + eps)),     loss = sum_pairs l / (2 n_pairs)

(the clip bounds the joint log-ratio log(rho1 / rho2) to [-eps, eps]; unclipped gradient
``-(q w / 2) grad(log pi(y1) - log pi(y2))``). ``clip="separate"`` ("V1" [inferred]) clips each token:

    token of y_i: max(-s_i q w logp_t, -s_i q w clamp(logp_t, prox_logp_t - eps, prox_logp_t + eps)),
    s_1 = +1, s_2 = -1,   loss = sum over the valid tokens of both responses / n_tokens.

[verified: code] the first author's trlx fork (``p3o_loss``); the rewards R are what the learner gives
(the fork divides them by a running std and clips them to +-10 before this loss).
"""

from __future__ import annotations

import math

import torch

from ratiolab.correction.ratio import LOG_RATIO_BOUND
from ratiolab.preference.batch import PreferenceBatch
from ratiolab.preference.core import PREFERENCE_LOSSES

CLIPS = ("joint", "separate")


@PREFERENCE_LOSSES.register(
    "p3o", arxiv="2310.00212",
    summary="pairwise PPO: -q w (LR1 - LR2), clipped jointly (or per token) around the old log-ratios",
    requires=("chosen_ref_logp", "rejected_ref_logp", "chosen_prox_logp", "rejected_prox_logp", "chosen_reward"),
)
def p3o(
    batch: PreferenceBatch, *, clip: str = "joint", clip_eps: float = 0.2, ratio_cap: float = 10.0,
    kl_coef: float = 0.05,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """P3O loss (see the module docstring): ``clip_eps`` is eps (0.2), ``ratio_cap`` is C (10), ``kl_coef``
    the trajectory-KL coefficient (0.05). Metrics: ``p3o/clip_frac`` (pairs, or tokens with ``separate``,
    whose clip is active), ``p3o/q_mean``, ``p3o/pair_weight_mean``, ``p3o/pair_weight_cap_frac``."""
    if clip not in CLIPS:
        raise ValueError(f"p3o: clip must be one of {CLIPS}, got {clip!r}")
    if not clip_eps >= 0:
        raise ValueError(f"p3o: clip_eps must be >= 0, got {clip_eps}")
    if not ratio_cap >= 1:
        raise ValueError(f"p3o: ratio_cap (C) must be >= 1, got {ratio_cap}")
    if not kl_coef >= 0:
        raise ValueError(f"p3o: kl_coef must be >= 0, got {kl_coef}")
    r1, r2 = batch.rewards()
    lp1, lp2 = batch.sums("logp")
    ref1, ref2 = batch.sums("ref_logp")
    old1, old2 = batch.sums("prox_logp")
    lr1, lr2 = lp1 - ref1, lp2 - ref2
    olr1, olr2 = old1 - ref1, old2 - ref2
    q = (r1 - r2 - kl_coef * (lr1 - lr2)).detach()
    log_w = ((lr1 - olr1) + (lr2 - olr2)).detach()
    cap = min(math.log(ratio_cap), LOG_RATIO_BOUND)
    qw = q * log_w.clamp(-cap, cap).exp()
    metrics = {
        "p3o/q_mean": q.mean(),
        "p3o/pair_weight_mean": log_w.clamp(-cap, cap).exp().mean(),
        "p3o/pair_weight_cap_frac": (log_w.abs() >= cap).to(q.dtype).mean(),
    }
    if clip == "joint":
        d, d_old = lr1 - lr2, (olr1 - olr2).detach()
        clipped = torch.clamp(d, d_old - clip_eps, d_old + clip_eps)
        per = torch.maximum(-qw * d, -qw * clipped)
        metrics["p3o/clip_frac"] = ((d - d_old).detach().abs() > clip_eps).to(q.dtype).mean()
        return per.sum() / (2.0 * batch.global_pairs()), metrics
    total = q.new_zeros(())
    moved, count = q.new_zeros(()), q.new_zeros(())
    for sign, side in ((1.0, "chosen"), (-1.0, "rejected")):
        logp, prox, mask = (getattr(batch, f"{side}_{n}") for n in ("logp", "prox_logp", "mask"))
        coef = sign * qw[:, None]
        clipped = torch.clamp(logp, prox - clip_eps, prox + clip_eps)
        total = total + (torch.maximum(-coef * logp, -coef * clipped) * mask).sum()
        moved = moved + (((logp - prox).detach().abs() > clip_eps).to(mask.dtype) * mask).sum()
        count = count + mask.sum()
    metrics["p3o/clip_frac"] = moved / count.clamp(min=1.0)
    return total / batch.global_tokens(), metrics
