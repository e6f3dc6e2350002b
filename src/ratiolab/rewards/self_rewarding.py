"""Self-Rewarding PPO's implicit reward (arXiv 2510.21090; docs/methods/rlhf.md §6).

    r(x, y) = log pi_sft(y|x) - log pi_pt(y|x) = sum_t mask (sft_logp_t - pt_logp_t)

the sequence log-ratio of the SFT model to the pretrained base model, both frozen. It is a per-response
score: placed on the EOS token like any outcome score (plus the usual KL shaping), then PPO with a critic
from pi_sft. No scaling is reported. [secondary source]; the KL reference (presumably pi_sft), a dense
per-token variant and length normalisation are [unverified].
"""

from __future__ import annotations

import torch

from ratiolab.rewards.checks import finite


def log_ratio_reward(sft_logp: torch.Tensor, pt_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` rewards ``sum_t mask (sft_logp - pt_logp)`` of ``[B, T]`` frozen log-probs (detached)."""
    if mask.dim() != 2:
        raise ValueError(f"log_ratio_reward: mask must be [B, T], got shape {tuple(mask.shape)}")
    for name, t in (("sft_logp", sft_logp), ("pt_logp", pt_logp)):
        if t.shape != mask.shape:
            raise ValueError(f"log_ratio_reward: {name} has shape {tuple(t.shape)}, expected {tuple(mask.shape)}")
    diff = torch.where(mask > 0, sft_logp.detach() - pt_logp.detach(), 0.0)  # padding may hold anything
    finite("log_ratio_reward", "sft_logp - pt_logp on valid tokens", diff)
    return diff.sum(-1)
