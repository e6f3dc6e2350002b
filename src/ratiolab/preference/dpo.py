"""DPO: direct preference optimisation (Rafailov et al., arXiv 2305.18290; docs/methods/rlhf.md §16).

With summed sequence log-probs ``LP = sum_t mask * logp`` and the implicit rewards
``u_w = beta (LP_theta - LP_ref)(y_w)``, ``u_l = beta (LP_theta - LP_ref)(y_l)``:

    h = (LP_theta - LP_ref)(y_w) - (LP_theta - LP_ref)(y_l)
    l = -(1 - s) log sigma(beta h) - s log sigma(-beta h)          (s = label_smoothing, 0: plain DPO)

averaged over pairs. [verified: code] for ``s = 0`` (OPA-DPO's ``dpo_loss``); the label-smoothed form is
[unverified]. ``level="position"`` is OPA-DPO's code form: the logits are formed per position between the
chosen and rejected per-token log-ratios (equal ``T`` on both sides, padding counted as 0) and averaged
over all ``B * T`` positions, padding included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ratiolab.preference.batch import PreferenceBatch
from ratiolab.preference.core import PREFERENCE_LOSSES

LEVELS = ("sequence", "position")


@PREFERENCE_LOSSES.register(
    "dpo", arxiv="2305.18290", summary="-log sigmoid(beta * (log-ratio(y_w) - log-ratio(y_l))) to the reference",
    requires=("chosen_ref_logp", "rejected_ref_logp"),
)
def dpo(
    batch: PreferenceBatch, *, beta: float = 0.1, label_smoothing: float = 0.0, level: str = "sequence",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO loss (see the module docstring); metrics: the mean implicit rewards ``dpo/reward_chosen``,
    ``dpo/reward_rejected``, their margin ``dpo/margin`` (``beta h``) and ``dpo/accuracy`` (share of pairs
    with ``h > 0``)."""
    if not beta > 0:
        raise ValueError(f"dpo: beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"dpo: label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if level not in LEVELS:
        raise ValueError(f"dpo: level must be one of {LEVELS}, got {level!r}")
    lp_w, lp_l = batch.sums("logp")
    ref_w, ref_l = batch.sums("ref_logp")
    u_w, u_l = beta * (lp_w - ref_w), beta * (lp_l - ref_l)
    if level == "sequence":
        logits = u_w - u_l
        denom = batch.global_pairs()
    else:
        if batch.chosen_logp.shape != batch.rejected_logp.shape:
            raise ValueError(f"dpo: level='position' needs chosen and rejected of equal shape, got "
                             f"{tuple(batch.chosen_logp.shape)} and {tuple(batch.rejected_logp.shape)}; pad both "
                             "sides to one length")
        assert batch.chosen_ref_logp is not None and batch.rejected_ref_logp is not None
        logits = beta * ((batch.chosen_logp - batch.chosen_ref_logp) * batch.chosen_mask
                         - (batch.rejected_logp - batch.rejected_ref_logp) * batch.rejected_mask)
        denom = batch.global_pairs() * batch.chosen_logp.shape[1]
    per = -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    margin = (u_w - u_l).detach()
    metrics = {
        "dpo/reward_chosen": u_w.detach().mean(),
        "dpo/reward_rejected": u_l.detach().mean(),
        "dpo/margin": margin.mean(),
        "dpo/accuracy": (margin > 0).to(margin.dtype).mean(),
    }
    return per.sum() / denom, metrics
