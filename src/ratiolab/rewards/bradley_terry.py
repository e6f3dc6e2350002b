"""Reward-model losses on preference pairs: Bradley-Terry, Plackett-Luce, and PPO-M's calibrated CRM loss
(docs/methods/rlhf.md §4).

Bradley-Terry: ``L = mean(-log sigma(r(y_w) - r(y_l) - margin))``. PPO-M (arXiv 2410.09724) trains a
calibrated reward model (CRM), initialised from the base RM, on high- and low-confidence verbalised versions
of each pair (chosen c / rejected r with high h / low l confidence: cwh, cwl, rwh, rwl):

    L_CRM = BT(cwh, cwl) + BT(rwl, rwh)                      (each term a batch mean, margin inside sigma)
    combined:  + BT(c, r)            variant_1: + BT(cwh, rwl)
    kwise:     Plackett-Luce over the ranking [cwh, cwl, rwl, rwh] (instead of the sum above [inferred])

[verified: code] SeanLeng1/Reward-Calibration ``crm_trainer.py`` (``--loss sigmoid``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ratiolab.rewards.checks import finite, vector

CRM_VARIANTS = ("crm", "combined", "variant_1", "kwise")


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, *, margin: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``mean(-log sigma(chosen - rejected - margin))`` over ``[B]`` reward-model scores (gradient kept);
    metrics ``rm/accuracy`` (share with chosen > rejected) and ``rm/margin`` (mean score gap)."""
    vector("bradley_terry_loss", "chosen", chosen)
    vector("bradley_terry_loss", "rejected", rejected, chosen.numel())
    finite("bradley_terry_loss", "chosen", chosen.detach())
    finite("bradley_terry_loss", "rejected", rejected.detach())
    gap = chosen - rejected
    loss = -F.logsigmoid(gap - margin).mean()
    d = gap.detach()
    return loss, {"rm/accuracy": (d > 0).to(d.dtype).mean(), "rm/margin": d.mean()}


def plackett_luce_loss(scores: torch.Tensor) -> torch.Tensor:
    """``mean_b sum_{k < K-1} -(s_k - logsumexp(s_k..s_{K-1}))`` for ``[B, K]`` scores ranked best first
    (K = 2 is Bradley-Terry)."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"plackett_luce_loss: scores must be [B, K >= 2] ranked best first, got {tuple(scores.shape)}")
    finite("plackett_luce_loss", "scores", scores.detach())
    tail = torch.logcumsumexp(scores.flip(-1), -1).flip(-1)  # logsumexp over s_k..s_{K-1}
    return -(scores - tail)[:, :-1].sum(-1).mean()


def crm_loss(
    cwh: torch.Tensor, cwl: torch.Tensor, rwh: torch.Tensor, rwl: torch.Tensor, *, variant: str = "crm",
    chosen: torch.Tensor | None = None, rejected: torch.Tensor | None = None, margin: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-M's calibrated-RM loss on ``[B]`` scores of the four verbalised responses (module docstring);
    ``combined`` also needs the scores of the plain ``chosen`` / ``rejected`` responses. Metrics
    ``crm/chosen_conf_acc`` (cwh > cwl) and ``crm/rejected_conf_acc`` (rwl > rwh)."""
    if variant not in CRM_VARIANTS:
        raise ValueError(f"crm_loss: variant must be one of {CRM_VARIANTS}, got {variant!r}")
    if variant == "kwise":
        loss = plackett_luce_loss(torch.stack([cwh, cwl, rwl, rwh], -1))
        _, m_hi = bradley_terry_loss(cwh, cwl)
        _, m_lo = bradley_terry_loss(rwl, rwh)
    else:
        hi, m_hi = bradley_terry_loss(cwh, cwl, margin=margin)
        lo, m_lo = bradley_terry_loss(rwl, rwh, margin=margin)
        loss = hi + lo
        if variant == "combined":
            if chosen is None or rejected is None:
                raise ValueError("crm_loss: variant='combined' needs chosen= and rejected= (scores of the plain pair)")
            loss = loss + bradley_terry_loss(chosen, rejected, margin=margin)[0]
        elif variant == "variant_1":
            loss = loss + bradley_terry_loss(cwh, rwl, margin=margin)[0]
    return loss, {"crm/chosen_conf_acc": m_hi["rm/accuracy"], "crm/rejected_conf_acc": m_lo["rm/accuracy"]}
