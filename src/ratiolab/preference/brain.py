"""BRAIn: distil the reward-tilted SFT policy by self-normalised importance sampling (arXiv 2402.02479;
docs/methods/rlhf.md §15).

The target is ``p(y | x, G=1) ∝ pi_sft(y|x) exp(r(x, y) / beta)`` (the KL-regularised optimum). With ``n``
responses y_i ~ q per prompt and sequence log-probs ``LP_theta``, ``log pi_sft``, ``log q``:

    alpha_i = sg(softmax_i(log pi_sft(y_i) + r_i / beta - log q(y_i)))     (target weights)
    b_i     = softmax_i(LP_theta(y_i) - log q(y_i))                         (self-normalised model weights)
    L       = -sum_i alpha_i log b_i,    dL/dLP_theta(y_i) = -(alpha_i - b_i)

averaged over prompts. With q = SFT, n = 2 and a hard (argmax) alpha this is the DPO gradient with
beta_DPO = 1. Structure [secondary source]; the defaults (n, beta, how often q is refreshed) are
[unverified], so ``beta`` has no default and the entry is experimental.
"""

from __future__ import annotations

import torch

from ratiolab.preference.batch import PreferenceBatch
from ratiolab.preference.core import PREFERENCE_LOSSES

PROPOSALS = ("ref", "prox")


def brain_loss(
    lp_theta: torch.Tensor, log_q: torch.Tensor, log_sft: torch.Tensor, rewards: torch.Tensor, beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-prompt BRAIn loss ``[P]`` of ``[P, n]`` sequence log-probs and rewards (``n >= 2`` responses per
    prompt, one prompt per row); metrics ``brain/target_max`` (mean of max_i alpha_i) and ``brain/tv``
    (mean total variation between alpha and b)."""
    if not beta > 0:
        raise ValueError(f"brain: beta must be > 0, got {beta}")
    shape = lp_theta.shape
    if lp_theta.dim() != 2 or shape[1] < 2:
        raise ValueError(f"brain: lp_theta must be [P, n] with n >= 2 responses per prompt, got {tuple(shape)}")
    for name, t in (("log_q", log_q), ("log_sft", log_sft), ("rewards", rewards)):
        if t.shape != shape:
            raise ValueError(f"brain: {name} has shape {tuple(t.shape)}, expected {tuple(shape)} like lp_theta")
    alpha = torch.softmax((log_sft + rewards / beta - log_q).detach(), dim=-1)
    log_b = torch.log_softmax(lp_theta - log_q.detach(), dim=-1)
    per = -(alpha * log_b).sum(-1)
    metrics = {
        "brain/target_max": alpha.max(-1).values.mean(),
        "brain/tv": 0.5 * (alpha - log_b.detach().exp()).abs().sum(-1).mean(),
    }
    return per, metrics


@PREFERENCE_LOSSES.register(
    "brain", arxiv="2402.02479",
    summary="-sum_i alpha_i log b_i: SNIS weights of pi_sft exp(r/beta) vs the model's self-normalised weights",
    requires=("chosen_ref_logp", "rejected_ref_logp", "chosen_reward"), experimental=True,
)
def brain(
    batch: PreferenceBatch, *, beta: float, proposal: str = "ref",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BRAIn over the pair (n = 2) of each row: pi_sft is the reference (``ref_logp``); the proposal q that
    sampled both responses is the SFT model (``proposal="ref"``) or the recorded policy (``"prox"``, needs
    ``prox_logp``). :func:`brain_loss` takes ``n > 2`` responses per prompt."""
    if proposal not in PROPOSALS:
        raise ValueError(f"brain: proposal must be one of {PROPOSALS}, got {proposal!r}")
    lp = torch.stack(batch.sums("logp"), -1)
    sft = torch.stack(batch.sums("ref_logp"), -1)
    log_q = sft if proposal == "ref" else torch.stack(batch.sums("prox_logp"), -1)
    per, metrics = brain_loss(lp, log_q, sft, torch.stack(batch.rewards(), -1), beta)
    return per.sum() / batch.global_pairs(), metrics
