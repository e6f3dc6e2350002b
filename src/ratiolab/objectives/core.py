"""The objective registry and ``compute``: correction -> objective -> aggregation.

An objective is a pure function ``fn(inputs, log_r, **params) -> (per_token_loss, metrics)``
over ``[B, T]`` tensors, where ``log_r = clamp(logp - prox_logp)`` is the log of ``r_stale``
(with gradient). ``compute`` applies the two-factor rule of DESIGN §1 around it:

    loss = agg( mask * keep * w * l(r_stale)  [+ kl_coef * k(logp, ref_logp)]  [- entropy_coef * H] )

where ``(w, keep)`` is the configured discrepancy correction of ``w_disc`` (a constant; only
``r_stale`` is clipped by the objective), ``agg`` is the ``aggregation`` mode with the batch's
global normalisers. Every objective accepts the common parameters in :data:`COMMON`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ratiolab import correction, kl
from ratiolab.masked import masked_mean, masked_stats
from ratiolab.objectives.aggregation import aggregate, check_mode
from ratiolab.registry import Registry
from ratiolab.types import LossOutput, PolicyLossInputs

#: Parameters every objective accepts, with their defaults.
COMMON: dict[str, Any] = {
    "aggregation": "token-mean",
    "correction": "none",
    "kl_coef": 0.0,
    "kl_kind": "k3",
    "entropy_coef": 0.0,
    "sum_norm_constant": None,
    "sum_norm_divisor": "num_seqs",
}

OBJECTIVES = Registry("objective", common=COMMON)


@dataclass(frozen=True)
class ObjectiveInfo:
    """What ``available()`` lists for one objective."""

    name: str
    arxiv: str
    summary: str
    defaults: dict[str, Any]


def available() -> list[ObjectiveInfo]:
    """Every registered objective with its arXiv id, one-line summary and default parameters."""
    return [ObjectiveInfo(e.name, e.arxiv, e.summary, e.defaults) for e in OBJECTIVES]


def compute(name: str, inputs: PolicyLossInputs, **params: Any) -> LossOutput:
    """Loss of objective ``name`` on ``inputs``; see the module docstring for the composition."""
    p = OBJECTIVES.resolve(name, params)
    common = {k: p.pop(k) for k in COMMON}
    check_mode(common["aggregation"])
    mask = inputs.mask
    log_r = correction.log_ratio(inputs.logp, inputs.prox_logp)
    per_token, metrics = OBJECTIVES.get(name).fn(inputs, log_r, **p)

    corr = None
    if inputs.behav_logp is not None:  # w_disc only exists with engine log-probs
        w_disc = correction.discrepancy_weight(inputs)
        corr = _correct(common["correction"], w_disc, mask)
        per_token = per_token * (corr.weight * corr.keep)
        metrics.update(corr.metrics)
        metrics.update(masked_stats(w_disc, mask, "w_disc"))
        metrics["w_disc/ess"] = _ess(w_disc, mask)
    keep = torch.ones_like(mask) if corr is None else corr.keep

    if common["kl_coef"]:
        if inputs.ref_logp is None:
            raise ValueError(f"objective {name!r}: kl_coef > 0 needs inputs.ref_logp (the reference log-probs)")
        k = kl.estimate(common["kl_kind"], inputs.logp, inputs.ref_logp)
        per_token = per_token + common["kl_coef"] * k * keep
        metrics[f"kl/{common['kl_kind']}"] = float(masked_mean(k.detach(), mask))
    if common["entropy_coef"]:
        if inputs.entropy is None:
            raise ValueError(f"objective {name!r}: entropy_coef > 0 needs inputs.entropy")
        per_token = per_token - common["entropy_coef"] * inputs.entropy

    loss = aggregate(
        per_token,
        mask,
        common["aggregation"],
        num_tokens=inputs.num_tokens,
        num_seqs=inputs.num_seqs,
        sum_norm_constant=common["sum_norm_constant"],
        sum_norm_divisor=common["sum_norm_divisor"],
    )
    metrics.update(_ratio_metrics(inputs, log_r))
    return LossOutput(loss, metrics)


def _correct(spec: str | Mapping[str, Any], w_disc: torch.Tensor, mask: torch.Tensor) -> correction.Corrected:
    """``spec`` is a kind name or a mapping ``{"kind": ..., **params}``."""
    if isinstance(spec, str):
        return correction.apply(spec, w_disc, mask)
    params = dict(spec)
    kind = params.pop("kind", None)
    if not isinstance(kind, str):
        raise ValueError("correction mapping needs a 'kind' key, e.g. {'kind': 'mask', 'level': 'token'}")
    return correction.apply(kind, w_disc, mask, **params)


def _ess(w: torch.Tensor, mask: torch.Tensor) -> float:
    """Normalised effective sample size (sum w)^2 / (N sum w^2) over valid tokens."""
    wm = w.detach().double() * mask
    n = mask.sum().clamp(min=1.0)
    return float(wm.sum() ** 2 / (n * (wm.square()).sum()).clamp(min=1e-300))


def _ratio_metrics(inputs: PolicyLossInputs, log_r: torch.Tensor) -> dict[str, float]:
    mask = inputs.mask
    lr = log_r.detach()
    r = lr.exp()
    out = masked_stats(r, mask, "r_stale")
    names = ["approx_kl", "ratio/log_clamp_frac"]
    vals = [
        masked_mean(r - 1.0 - lr, mask),  # k3 of KL(prox || theta)
        masked_mean(correction.clamp_bites(inputs.logp, inputs.prox_logp).to(mask.dtype), mask),
    ]
    if inputs.entropy is not None:
        names.append("entropy")
        vals.append(masked_mean(inputs.entropy.detach(), mask))
    out.update(zip(names, torch.stack(vals).tolist(), strict=True))
    return out
