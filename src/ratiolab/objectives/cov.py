"""Clip-Cov and KL-Cov (arXiv 2505.22617): entropy control on high-covariance tokens.

Per valid token ``cov_t = (A_t - mean A) (logp_t - mean logp)`` (detached), the term that drives
entropy collapse. Clip-Cov drops the gradient of a random few tokens with ``cov`` in
``(clip_cov_lb, clip_cov_ub)``; KL-Cov adds ``ppo_kl_coef |log r|`` to the top-``cov`` tokens
(verl ``compute_policy_loss_clip_cov`` / ``compute_policy_loss_kl_cov``, defaults from there).

Two deliberate differences from verl, so that micro-batch gradients sum to the full-batch one:

- *Unit.* verl centres and selects over the (micro-)batch it is called on, so its selection
  depends on the micro-batch size and rank count. Here the unit is the prompt group (``seq_ids``;
  ``split`` and the learner keep groups whole), or the whole call's batch without ``seq_ids``.
- *Budget.* A unit with ``n`` valid tokens selects ``k = floor(ratio n + u)`` tokens, ``u ~ U[0, 1)``
  (stochastic rounding, ``E k = ratio n``), where verl takes ``max(1, int(ratio n))`` per call.

Randomness (``u`` and Clip-Cov's choice, verl's ``torch.randperm``) is deterministic: each unit
draws from a ``torch.Generator`` seeded by ``hash((seed, group id, sum of its masked prox_logp))``,
so a batch and ``seed`` give one selection however the batch is split, and new data new draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ratiolab.masked import masked_frac
from ratiolab.objectives.checks import check_clip
from ratiolab.objectives.core import OBJECTIVES
from ratiolab.objectives.grouping import group_mean
from ratiolab.objectives.ppo import clip_surrogate
from ratiolab.types import PolicyLossInputs

#: ``pick(cov_values, k, generator) -> indices`` of the ``k`` chosen candidates.
Picker = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def covariance(inputs: PolicyLossInputs) -> torch.Tensor:
    """Detached ``[B, T]`` ``cov_t``, centred by the masked means of its prompt group (or of the batch)."""
    b, t = inputs.logp.shape
    ids = inputs.seq_ids if inputs.seq_ids is not None else torch.zeros(b, dtype=torch.long)
    keys = ids.to(inputs.logp.device)[:, None].expand(b, t)
    adv, lp, mask = inputs.adv, inputs.logp.detach(), inputs.mask
    return (adv - group_mean(adv, keys, mask)) * (lp - group_mean(lp, keys, mask))


def select(inputs: PolicyLossInputs, cov: torch.Tensor, candidate: torch.Tensor, ratio: float, seed: int,
           pick: Picker) -> torch.Tensor:
    """Bool ``[B, T]``: per unit, ``min(k, #candidates)`` candidates chosen by ``pick`` (see the module doc).

    ``pick`` sees a unit's candidates in row-major order. Two host transfers per call (the unit ids; every
    unit's checksum, valid-token count and candidate count at once); the per-unit work left is what the
    selection is defined by: the checksum (summed over the unit's rows exactly as one block), the draws of
    the unit's own generator and ``pick`` on the unit's slice of the candidates.
    """
    b, t = cov.shape
    ids = inputs.seq_ids.tolist() if inputs.seq_ids is not None else [0] * b
    units = sorted(set(ids))
    rows = [[i for i, g in enumerate(ids) if g == unit] for unit in units]
    order = [i for r in rows for i in r]  # rows grouped by unit: each unit's candidates are one slice
    # contiguous, as the rows the checksum was defined on (a gathered copy): the same sum, bit for bit
    weighted, mask = (inputs.prox_logp * inputs.mask).contiguous(), inputs.mask.contiguous()
    blocks = [_block(r, cov.device) for r in rows]
    sums = torch.stack([s for blk in blocks for s in (weighted[blk].sum(), mask[blk].sum())])
    host = torch.cat([sums.double(), candidate.sum(-1).double()]).tolist()
    if order == list(range(b)):
        cand = candidate.flatten().nonzero().squeeze(-1)  # flat index of every candidate, unit by unit
    else:
        perm = torch.tensor(order, device=cov.device)
        pos = candidate[perm].flatten().nonzero().squeeze(-1)
        cand = perm[pos // t] * t + pos % t
    values = cov.flatten()[cand]
    chosen, offset = [], 0
    for u, (unit, r) in enumerate(zip(units, rows, strict=True)):
        checksum, n = host[2 * u], host[2 * u + 1]
        n_cand = int(sum(host[2 * len(units) + i] for i in r))
        gen = torch.Generator().manual_seed(hash((seed, unit, checksum)) % 2**63)
        k = min(math.floor(ratio * n + torch.rand((), generator=gen, dtype=torch.float64).item()), n_cand)
        if k > 0:
            chosen.append(pick(values[offset : offset + n_cand], k, gen).to(cov.device) + offset)
        offset += n_cand
    selected = torch.zeros(b * t, dtype=torch.bool, device=cov.device)
    if chosen:
        selected[cand[torch.cat(chosen)]] = True
    return selected.view(b, t)


def _block(rows: list[int], device: torch.device) -> slice | torch.Tensor:
    """Index of a unit's rows: a slice when they are consecutive (no copy), else an index tensor."""
    if rows == list(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return torch.tensor(rows, device=device)


def _random(values: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(values.numel(), generator=gen)[:k]


def _top(values: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.topk(values, k).indices


def _check_ratio(method: str, name: str, ratio: float) -> None:
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"{method}: {name} must be in (0, 1] (a fraction of tokens), got {ratio}")


@OBJECTIVES.register(
    "clip_cov", arxiv="2505.22617", summary="PPO-clip; drop the gradient of random tokens with cov(logp, A) in a band"
)
def clip_cov(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``l_t = (1 - d_t) max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))`` on the token ratio ``r_t``.

    ``d_t = 1`` on ``k`` tokens drawn uniformly (generator of the module doc) among the valid tokens
    that PPO did not clip and with ``clip_cov_lb < cov_t < clip_cov_ub``: their loss and gradient are
    zero. Metric ``cov/selected_frac`` is the share of valid tokens detached.
    """
    check_clip("clip_cov", clip_low, clip_high)
    _check_ratio("clip_cov", "clip_cov_ratio", clip_cov_ratio)
    if not clip_cov_lb < clip_cov_ub:
        raise ValueError(f"clip_cov: need clip_cov_lb < clip_cov_ub, got {clip_cov_lb} and {clip_cov_ub}")
    adv, mask = inputs.adv, inputs.mask
    r = log_r.exp()
    loss, metrics = clip_surrogate(adv, r, clip_low, clip_high, mask)
    ppo_clipped = (-adv * r.clamp(1.0 - clip_low, 1.0 + clip_high) > -adv * r).detach()
    cov = covariance(inputs)
    candidate = (mask > 0) & ~ppo_clipped & (cov > clip_cov_lb) & (cov < clip_cov_ub)
    detached = select(inputs, cov, candidate, clip_cov_ratio, seed, _random)
    metrics["cov/selected_frac"] = masked_frac(detached, mask)
    return loss * (~detached).to(loss.dtype), metrics


@OBJECTIVES.register(
    "kl_cov", arxiv="2505.22617", summary="unclipped -A r plus coef |log r| on the top cov(logp, A) tokens"
)
def kl_cov(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    kl_cov_ratio: float = 2e-4,
    ppo_kl_coef: float = 1.0,
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``l_t = -A_t r_t + ppo_kl_coef |log r_t| s_t`` on the token ratio ``r_t`` (no clip, as in verl).

    ``s_t = 1`` on the ``k`` valid tokens of largest ``cov_t`` in each unit; ``kl_cov_ratio`` is their
    fraction (verl's default 2e-4) and ``seed`` only rounds ``k``.
    Metric ``cov/selected_frac`` is the share of valid tokens penalised.
    """
    _check_ratio("kl_cov", "kl_cov_ratio", kl_cov_ratio)
    if not ppo_kl_coef >= 0:
        raise ValueError(f"kl_cov: ppo_kl_coef must be >= 0, got {ppo_kl_coef}")
    mask = inputs.mask
    cov = covariance(inputs)
    penalised = select(inputs, cov, mask > 0, kl_cov_ratio, seed, _top)
    loss = -inputs.adv * log_r.exp() + ppo_kl_coef * log_r.abs() * penalised.to(log_r.dtype)
    return loss, {"cov/selected_frac": masked_frac(penalised, mask)}
