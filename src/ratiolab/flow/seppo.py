"""SePPO (arXiv 2410.05255): Diffusion-DPO against reference-model samples, with an anchor flip (flow.md §5)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ratiolab.flow.core import FLOW_LOSSES

MODES = ("flip", "sft")


@FLOW_LOSSES.register(
    "seppo",
    arxiv="2410.05255",
    summary="[inferred] Diffusion-DPO: SFT image wins over a reference-checkpoint sample; anchor flips (v1) or "
            "falls back to SFT (v2)",
    inputs=("err_win", "err_win_ref", "err_lose", "err_lose_ref"),
    experimental=True,
)
def seppo(
    *, err_win: torch.Tensor, err_win_ref: torch.Tensor, err_lose: torch.Tensor, err_lose_ref: torch.Tensor,
    beta: float, mode: str = "flip",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``z = -beta/2 ([l_theta(w) - l_ref(w)] - [l_theta(l) - l_ref(l)])``, ``L = mean_B -log sigma(+-z)``.

    The Diffusion-DPO loss with winner ``w`` = an SFT (off-policy) sample and loser ``l`` = a sample of a
    reference model drawn among earlier checkpoints, both scored under pi_theta and that reference
    [secondary source]. Anchor [inferred; the paper's criterion is a gap]: the loser is judged a likely
    winner when its error gain beats the winner's, ``d_l = l_theta(l) - l_ref(l) < d_w``. Such a pair
    flips to ``-log sigma(-z)`` (``mode="flip"``, v1) or uses the SFT loss ``l_theta(w)`` alone
    (``mode="sft"``, v2). ``beta`` has no documented default: the caller sets it.
    """
    if mode not in MODES:
        raise ValueError(f"seppo: mode must be one of {MODES}, got {mode!r}")
    if not beta > 0:
        raise ValueError(f"seppo: beta must be > 0, got {beta}")
    d_w, d_l = err_win - err_win_ref, err_lose - err_lose_ref
    z = -0.5 * beta * (d_w - d_l)
    anchor = (d_l < d_w).detach()
    dpo = -F.logsigmoid(z)
    other = -F.logsigmoid(-z) if mode == "flip" else err_win
    loss = torch.where(anchor, other, dpo).mean()
    return loss, {"seppo/anchor_frac": anchor.float().mean(), "seppo/margin_mean": z.detach().mean()}
