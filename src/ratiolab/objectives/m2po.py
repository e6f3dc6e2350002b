"""M2PO: second-moment trust policy optimization (arXiv 2510.01161).

The mask is chosen over the whole batch the selection sees, so it is NOT micro-batch invariant:
selected per micro-batch (``m2_cutoff=None``, also AReaL's default) it depends on the partition.
For the full-batch mask, compute ``cutoff = m2po_cutoff(full_batch, log_r)`` once per optimisation
batch and pass ``m2_cutoff=cutoff`` to every micro-batch; the accumulated gradient then equals the
full-batch gradient exactly. :func:`batch_global_params` is that step, declared on the registry entry
(``batch_params``): a learner that splits an optimisation batch calls it once per batch (no grad) and
passes its result to every micro-batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ratiolab.masked import masked_frac
from ratiolab.objectives.core import OBJECTIVES
from ratiolab.types import PolicyLossInputs

SCOPES = ("all", "harmful")


def _check(tau: float, scope: str) -> None:
    if not tau >= 0.0:
        raise ValueError(f"m2po: tau must be >= 0, got {tau}")
    if scope not in SCOPES:
        raise ValueError(f"m2po: scope must be one of {SCOPES}, got {scope!r}")


def _candidates(inputs: PolicyLossInputs, log_r: torch.Tensor, scope: str) -> torch.Tensor:
    """Valid tokens the constraint acts on: all, or those PPO's clip would bind on (A r moving away)."""
    valid = inputs.mask > 0
    if scope == "all":
        return valid
    lr, adv = log_r.detach(), inputs.adv
    return valid & (((adv > 0) & (lr > 0)) | ((adv < 0) & (lr < 0)))


def _m2(log_r: torch.Tensor) -> torch.Tensor:
    return log_r.detach().double().square()


def m2po_cutoff(inputs: PolicyLossInputs, log_r: torch.Tensor, *, tau: float = 0.04, scope: str = "all") -> float:
    """Largest kept ``(log r)^2``: tokens in scope above it are masked so that their mean ``(log r)^2 <= tau``.

    Sort the candidates' ``(log r)^2`` ascending and keep the longest prefix whose mean is ``<= tau``
    (prefix means only grow); ``inf`` if nothing needs masking, ``-inf`` if even the smallest value
    exceeds ``tau``. Ties at the cutoff are all kept. A host float (the selection syncs once per call);
    pass a precomputed ``m2_cutoff`` to the objective to keep micro-batches sync-free.
    """
    _check(tau, scope)
    m2 = _m2(log_r)[_candidates(inputs, log_r, scope)]
    if m2.numel() == 0 or float(m2.mean()) <= tau:
        return math.inf
    vals = torch.sort(m2).values
    prefix = torch.cumsum(vals, 0) / torch.arange(1, vals.numel() + 1, dtype=vals.dtype)
    keep = int((prefix <= tau).sum())
    return float(vals[keep - 1]) if keep else -math.inf


def batch_global_params(inputs: PolicyLossInputs, log_r: torch.Tensor, params: Mapping[str, Any]) -> dict[str, Any]:
    """Learner hook: ``{"m2_cutoff": ...}`` of the whole optimisation batch ``inputs`` under the objective's
    resolved ``params`` (nothing when ``m2_cutoff`` is given)."""
    if params["m2_cutoff"] is not None:
        return {}
    return {"m2_cutoff": m2po_cutoff(inputs, log_r, tau=params["tau"], scope=params["scope"])}


@OBJECTIVES.register(
    "m2po", arxiv="2510.01161", summary="unclipped r A; largest (log r)^2 masked until batch mean (log r)^2 <= tau",
    batch_params=batch_global_params,
)
def m2po(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    tau: float = 0.04,
    scope: str = "all",
    m2_cutoff: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``l_t = -M_t r_t A_t`` (no clipping), ``r_t = r_stale`` token ratio, ``M_t`` the second-moment mask.

    ``M2 = mean over candidates of (log r)^2``; the candidates with the largest ``(log r)^2`` are
    masked until ``M2 <= tau`` (:func:`m2po_cutoff`); the aggregation still divides by all valid
    tokens. ``scope="all"`` takes every valid token (arXiv v1 Algorithm 1 as documented by AReaL,
    [secondary source]); ``"harmful"`` only tokens with (A > 0, r > 1) or (A < 0, r < 1), the later
    formulation ([verified: code] Trinity-RFT ``M2POPolicyLossFn``; the authors' repository selects
    the same tokens). ``tau = 0.04`` is the paper's default. ``log r = logp - prox_logp``: with version
    snapshots ``prox_logp`` is the stale behaviour version on the training side, the paper's
    ``pi_behav``; the engine's numerics stay in ``w_disc``. Batch-global: see the module docstring
    (``m2_cutoff`` given = precomputed full-batch threshold; ``None`` = select on this batch).
    """
    _check(tau, scope)
    cutoff = m2po_cutoff(inputs, log_r, tau=tau, scope=scope) if m2_cutoff is None else m2_cutoff
    cand = _candidates(inputs, log_r, scope)
    m2 = _m2(log_r)
    drop = cand & (m2 > cutoff)
    kept = cand & ~drop
    metrics = {
        "m2po/mask_frac": masked_frac(drop, inputs.mask),
        "m2po/m2_before": (m2 * cand).sum() / cand.sum().to(m2.dtype).clamp(min=1.0),
        "m2po/m2_after": (m2 * kept).sum() / kept.sum().to(m2.dtype).clamp(min=1.0),
    }
    return -inputs.adv * log_r.exp() * (~drop).to(log_r.dtype), metrics
