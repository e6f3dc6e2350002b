"""ORPO: occupancy-measure regularisation ("Correlated Proxies", Laidlaw et al., arXiv 2403.03185;
docs/methods/rlhf.md §10). Not the odds-ratio preference method of the same acronym.

The policy is kept close to a safe base policy in the (square root of the) chi-square divergence between
the two *occupancy measures*, instead of the action-level KL. These are additive regularisers, not
per-token objectives: the learner adds :func:`occupancy_regulariser` to the policy loss (LLM variant), or
subtracts :func:`discriminator_penalty` from the rewards (general-MDP variant).

**LLM variant** (one prompt per episode, a sequence-level estimate; [verified: code]
cassidylaidlaw/llm_optimization). Per sequence ``L = sum_t mask (logp - ref_logp)`` (with gradient) and,
with the linear extrapolation beyond ``c = clip``:

    ratio_m1     = expm1(L)   if L < c,  else e^c (1 + L - c) - 1
    inv_ratio_m1 = expm1(-L)  if L > -c, else e^c (1 - L - c) - 1
    KL_est   = mean(L + inv_ratio_m1)                 (unbiased KL(pi || ref) under pi's samples)
    chi2_est = mean(ratio_m1 + inv_ratio_m1)          (E_pi[ref / pi] = 1 as a control variate)
    loss term: coeff sqrt(max(chi2_est, floor))  (``sqrt_chi2``)   or   coeff KL_est  (``kl``)

The square root of a batch mean does not split over micro-batches: call it on the whole optimisation
batch (or accept a per-micro-batch estimate); the ``kl`` term does split (scale by the micro-batch share).

**General-MDP variant** ([verified: code] cassidylaidlaw/orpo): a discriminator d(s, a) trained with
``softplus(-d(policy)) + softplus(d(base))`` estimates log(mu_pi / mu_base); the per-step penalty is ``d``
(KL), ``e^d - 1`` (chi2) or ``(e^d - 1) / sqrt(M)`` (sqrt_chi2) with M the 1%-trimmed mean of ``e^d - 1``
(``int(0.01 n)`` values dropped from each end; no trim when that is 0, where the code's empty slice gave
NaN; no division when M <= 0), and the shaped reward is ``r - lam penalty``, non-finite entries set to 0
(counted) and then clipped to ``+-reward_clip``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REG_MODES = ("sqrt_chi2", "kl")
PENALTY_MODES = ("kl", "chi2", "sqrt_chi2")


def _extrapolated_expm1(x: torch.Tensor, clip: float) -> torch.Tensor:
    """``expm1(x)`` for ``x < clip``, continued linearly (value and slope at ``clip``) above it."""
    return torch.where(x < clip, torch.expm1(x.clamp(max=clip)), math.exp(clip) * (1.0 + x - clip) - 1.0)


def occupancy_estimates(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, *, clip: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(KL_est, chi2_est)`` of ``[B, T]`` tensors (module docstring), means over the non-empty sequences;
    gradient through ``logp``."""
    if logp.dim() != 2:
        raise ValueError(f"occupancy_estimates: logp must be [B, T], got shape {tuple(logp.shape)}")
    for name, t in (("ref_logp", ref_logp), ("mask", mask)):
        if t.shape != logp.shape:
            raise ValueError(f"occupancy_estimates: {name} has shape {tuple(t.shape)}, expected {tuple(logp.shape)}")
    if ref_logp.requires_grad:
        raise ValueError("occupancy_estimates: ref_logp requires grad; pass ref_logp.detach()")
    if not clip > 0:
        raise ValueError(f"occupancy_estimates: clip must be > 0, got {clip}")
    m = mask.to(logp.dtype)
    seq_l = ((logp - ref_logp) * m).sum(-1)
    rows = (m.sum(-1) > 0).to(logp.dtype)
    n = rows.sum().clamp(min=1.0)
    ratio_m1 = _extrapolated_expm1(seq_l, clip)
    inv_ratio_m1 = _extrapolated_expm1(-seq_l, clip)
    return ((seq_l + inv_ratio_m1) * rows).sum() / n, ((ratio_m1 + inv_ratio_m1) * rows).sum() / n


def occupancy_regulariser(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, *, mode: str = "sqrt_chi2",
    coeff: float = 0.0008, clip: float = 10.0, floor: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss term ``coeff sqrt(max(chi2_est, floor))`` (or ``coeff KL_est``) to add to the policy loss;
    ``coeff`` 0.0008 is the LLM README's. Metrics ``orpo/kl_est``, ``orpo/chi2_est``."""
    if mode not in REG_MODES:
        raise ValueError(f"occupancy_regulariser: mode must be one of {REG_MODES}, got {mode!r}")
    if not (math.isfinite(coeff) and coeff >= 0):
        raise ValueError(f"occupancy_regulariser: coeff must be a finite number >= 0, got {coeff}")
    kl_est, chi2_est = occupancy_estimates(logp, ref_logp, mask, clip=clip)
    term = chi2_est.clamp(min=floor).sqrt() if mode == "sqrt_chi2" else kl_est
    return coeff * term, {"orpo/kl_est": kl_est.detach(), "orpo/chi2_est": chi2_est.detach()}


def discriminator_loss(d_policy: torch.Tensor, d_base: torch.Tensor) -> torch.Tensor:
    """``mean softplus(-d(policy samples)) + mean softplus(d(base samples))``; its optimum is
    ``d = log(mu_pi / mu_base)``."""
    return F.softplus(-d_policy).mean() + F.softplus(d_base).mean()


def trimmed_mean(x: torch.Tensor, trim: float = 0.01) -> torch.Tensor:
    """Mean of ``x`` (flattened) without its ``int(trim n)`` smallest and largest values (untrimmed when 0)."""
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trimmed_mean: trim must be in [0, 0.5), got {trim}")
    v = x.flatten().sort().values
    k = int(trim * v.numel())
    return v[k: v.numel() - k].mean()


def discriminator_penalty(d: torch.Tensor, mode: str = "sqrt_chi2", *, trim: float = 0.01) -> torch.Tensor:
    """Per-step penalty from discriminator outputs ``d`` (module docstring); detached."""
    if mode not in PENALTY_MODES:
        raise ValueError(f"discriminator_penalty: mode must be one of {PENALTY_MODES}, got {mode!r}")
    d = d.detach()
    if mode == "kl":
        return d
    chi = torch.expm1(d)
    if mode == "chi2":
        return chi
    scale = trimmed_mean(chi[torch.isfinite(chi)], trim)
    return chi / scale.sqrt() if float(scale) > 0 else chi


def shaped_reward(
    rewards: torch.Tensor, penalty: torch.Tensor, coef: float, *, reward_clip: float = math.inf,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``clip(r - coef penalty, +-reward_clip)`` with non-finite entries set to 0 first; metric
    ``orpo/nonfinite`` counts them."""
    if penalty.shape != rewards.shape:
        raise ValueError(f"shaped_reward: penalty has shape {tuple(penalty.shape)}, expected {tuple(rewards.shape)}")
    if not reward_clip > 0:
        raise ValueError(f"shaped_reward: reward_clip must be > 0, got {reward_clip}")
    out = rewards - coef * penalty
    bad = ~torch.isfinite(out)
    out = torch.where(bad, 0.0, out).clamp(-reward_clip, reward_clip)
    return out, {"orpo/nonfinite": bad.sum().to(rewards.dtype)}
