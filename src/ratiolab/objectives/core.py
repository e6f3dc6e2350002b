"""The objective registry and ``compute``: correction -> objective -> aggregation.

An objective is a pure function ``fn(inputs, log_r, **params) -> (per_token_loss, metrics)``
over ``[B, T]`` tensors, where ``log_r = clamp(logp - prox_logp)`` is the log of ``r_stale``
(with gradient). ``compute`` applies the two-factor rule of DESIGN §1 around it:

    loss = agg_D( keep * ( w * l(r_stale)  [+ kl_coef * c * k(logp, ref_logp)]  [- entropy_coef * H] ) )

where ``(w, keep)`` is the configured discrepancy correction of ``w_disc`` (a constant; only
``r_stale`` is clipped by the objective; ``correction`` is a kind name, a mapping, or a list of them
chained), so a token the correction drops contributes neither its policy loss nor its KL nor its
entropy. ``c = 1``, or with ``kl_is_weight=True`` the importance ratio ``w * r_stale`` of pi_theta
against the sampling policy (see :func:`_kl_term`). ``agg_D`` is the ``aggregation`` mode with the
batch's global normalisers counting the ``mask_denominator``: ``valid`` tokens (default; masking does
not rescale the kept tokens' gradients) or ``kept`` tokens (``mask * keep``; ROLL's token-mean over
the final mask, and verl, whose rejection sampling edits ``response_mask``). With ``kept`` and a
micro-batch, ``inputs.num_tokens`` / ``num_seqs`` must count the kept tokens / sequences of the whole
batch. Half-precision inputs (bf16, fp16) are upcast to float32 before anything is computed.
Every objective accepts the common parameters in :data:`COMMON`.

Metrics contract: ``LossOutput.metrics`` (and the metrics an objective function returns) map names to
detached 0-d tensors on the batch's device; nothing in ``compute`` syncs with the host in the normal
path, so a learner keeps them on the device over its micro-batches and reduces them once per optimiser
step with :func:`reduce_metrics` (one device-to-host transfer). Objectives that choose something on
the host by design (M2PO's cutoff, the Clip-Cov / KL-Cov token draw, a stateful objective's
``observe``) say so in their docstrings. ``validate=True`` (the default) also runs
:meth:`PolicyLossInputs.check_values` (finite values, mask in [0, 1]; one host sync); a learner passes
it for the first micro-batch of each optimiser step and ``False`` for the others.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from ratiolab import correction, kl
from ratiolab.correction.ratio import LOG_RATIO_BOUND
from ratiolab.masked import masked_stats
from ratiolab.objectives.aggregation import aggregate, check_mode
from ratiolab.registry import Registry
from ratiolab.types import LossOutput, PolicyLossInputs

#: Parameters every objective accepts, with their defaults.
COMMON: dict[str, Any] = {
    "aggregation": "token-mean",
    "correction": "none",
    "mask_denominator": "valid",
    "kl_coef": 0.0,
    "kl_kind": "k3",
    "kl_is_weight": False,
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


def compute(name: str, inputs: PolicyLossInputs, *, validate: bool = True, **params: Any) -> LossOutput:
    """Loss of objective ``name`` on ``inputs``; see the module docstring for the composition, the
    metrics contract and ``validate``."""
    p = OBJECTIVES.resolve(name, params)
    common = {k: p.pop(k) for k in COMMON}
    _check_common(name, common)
    if validate:
        inputs.check_values()
    inputs = _upcast(inputs)
    mask = inputs.mask
    log_r = correction.log_ratio(inputs.logp, inputs.prox_logp)
    per_token, metrics = OBJECTIVES.get(name).fn(inputs, log_r, **p)
    weight = keep = log_w = w_disc = k = None
    if inputs.behav_logp is not None:  # w_disc only exists with engine log-probs
        # correction.discrepancy_weight, keeping log w_disc for the diagnostics
        log_w = correction.log_ratio(inputs.prox_logp, inputs.behav_logp).detach()
        w_disc = log_w.exp()
        corr = correction.apply_spec(common["correction"], w_disc, mask)
        weight, keep = corr.weight, corr.keep
        per_token = per_token * weight
        metrics.update(corr.metrics)
    if common["kl_coef"]:
        k = _kl_term(name, inputs, log_r, weight, common["kl_kind"], common["kl_is_weight"])
        per_token = per_token + common["kl_coef"] * k
    if common["entropy_coef"]:
        if inputs.entropy is None:
            raise ValueError(f"objective {name!r}: entropy_coef > 0 needs inputs.entropy")
        per_token = per_token - common["entropy_coef"] * inputs.entropy
    agg_mask = mask
    if keep is not None:
        per_token = per_token * keep
        if common["mask_denominator"] == "kept":
            agg_mask = mask * keep
    loss = aggregate(
        per_token,
        agg_mask,
        common["aggregation"],
        num_tokens=inputs.num_tokens,
        num_seqs=inputs.num_seqs,
        sum_norm_constant=common["sum_norm_constant"],
        sum_norm_divisor=common["sum_norm_divisor"],
    )
    metrics.update(_batch_metrics(inputs, log_r, log_w, w_disc, None if k is None else (common["kl_kind"], k)))
    return LossOutput(loss, metrics)


def _check_common(name: str, common: dict[str, Any]) -> None:
    check_mode(common["aggregation"])
    if common["mask_denominator"] not in ("valid", "kept"):
        raise ValueError(
            f"objective {name!r}: mask_denominator must be 'valid' or 'kept', got {common['mask_denominator']!r}"
        )
    for key in ("kl_coef", "entropy_coef"):
        v = common[key]
        if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValueError(
                f"objective {name!r}: {key} must be a finite number >= 0, got {v!r}; a negative coefficient "
                f"would reward {'moving away from the reference' if key == 'kl_coef' else 'lower entropy'}"
            )


def _upcast(inputs: PolicyLossInputs) -> PolicyLossInputs:
    """Cast half-precision (bf16, fp16) tensors to float32; gradients still flow back to ``logp``."""
    half = {
        f: t.float()
        for f in ("logp", "prox_logp", "adv", "mask", "behav_logp", "ref_logp", "entropy")
        if (t := getattr(inputs, f)) is not None and t.dtype in (torch.bfloat16, torch.float16)
    }
    return replace(inputs, **half) if half else inputs


def _kl_term(
    name: str,
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    weight: torch.Tensor | None,
    kind: str,
    is_weight: bool,
) -> torch.Tensor:
    """Per-token ``k(logp, ref_logp)``, times ``w * r_stale`` with ``is_weight`` (unbiased KL, arXiv 2512.02556).

    The tokens were sampled from mu, not pi_theta, so ``E_mu[k]`` is not KL(pi_theta || ref); with
    ``rho = w * r_stale`` (r_stale with gradient, w the correction's constant weight, 1 without
    ``behav_logp``) ``E_mu[rho k3] = E_theta[k3] = KL`` and, because rho carries gradient,
    ``E_mu[grad(rho k3)] = grad KL(pi_theta || ref)`` exactly: the DeepSeek-V3.2 estimator. A
    detached rho would give ``E_theta[grad k3] = grad KL(ref || pi_theta)`` instead. TRL's
    ``use_bias_correction_kl`` multiplies by pi_theta / pi_old alone (its vLLM IS weight scales only
    the policy term); ratiolab also applies the discrepancy weight, as for the policy term. The
    ``kl/{kind}`` metric reports the estimate that enters the loss (weighted when ``is_weight``).
    """
    if inputs.ref_logp is None:
        raise ValueError(f"objective {name!r}: kl_coef > 0 needs inputs.ref_logp (the reference log-probs)")
    k = kl.estimate(kind, inputs.logp, inputs.ref_logp)
    if not is_weight:
        return k
    rho = log_r.exp() if weight is None else log_r.exp() * weight
    return rho * k


def reduce_metrics(rows: Sequence[Mapping[str, torch.Tensor | float]], total: Collection[str] = ()) -> dict[str, float]:
    """Per-name mean over ``rows`` (over the rows that have the name; the sum for names in ``total``) as
    floats, in one device-to-host transfer per device.

    A learner collects the 0-d metric tensors of every micro-batch (or minibatch) of an optimiser step
    and calls this once; plain floats are summed on the host.
    """
    host: dict[str, float] = {}
    count: dict[str, int] = {}
    device_vals: dict[str, list[torch.Tensor]] = {}
    for row in rows:
        for k, v in row.items():
            count[k] = count.get(k, 0) + 1
            if isinstance(v, torch.Tensor):
                device_vals.setdefault(k, []).append(v.detach())
            else:
                host[k] = host.get(k, 0.0) + v
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for k, vs in device_vals.items():
        by_device.setdefault(vs[0].device, []).append((k, torch.stack(vs).sum(dtype=torch.float64)))
    for pairs in by_device.values():
        for (k, _), v in zip(pairs, torch.stack([t for _, t in pairs]).tolist(), strict=True):
            host[k] = host.get(k, 0.0) + v
    return {k: v if k in total else v / count[k] for k, v in host.items()}


def _batch_metrics(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    log_w: torch.Tensor | None,
    w_disc: torch.Tensor | None,
    kl_term: tuple[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """``compute``'s own diagnostics, from a few stacked reductions rather than one chain of small ops each.

    Masked means (mask-weighted, :func:`~ratiolab.masked.masked_mean`): ``approx_kl`` (k3 of
    KL(prox || theta), ``r - 1 - log r``), ``ratio/log_clamp_frac``, ``entropy`` and ``kl/{kind}`` where
    given; :func:`~ratiolab.masked.masked_stats` of ``r_stale`` (and ``w_disc``); with engine log-probs
    (``log_w = log w_disc``) the diagnostics of :func:`_offpolicy_metrics`.
    """
    mask = inputs.mask.detach()
    lr = log_r.detach()
    r = lr.exp()
    token = {"approx_kl": r - 1.0 - lr,
             "ratio/log_clamp_frac": correction.clamp_bites(inputs.logp, inputs.prox_logp)}
    if inputs.entropy is not None:
        token["entropy"] = inputs.entropy.detach()
    if kl_term is not None:
        token[f"kl/{kl_term[0]}"] = kl_term[1].detach()
    # one masked sum per tensor (no [K, B, T] stack: smaller temporaries), one division for all
    means = torch.stack([(x * mask).sum() for x in token.values()]) / mask.sum().clamp(min=1.0)
    out = dict(zip(token, means.unbind(), strict=True))
    if log_w is None or w_disc is None:
        out.update(masked_stats({"r_stale": r}, mask))
        return out
    out.update(masked_stats({"r_stale": r, "w_disc": w_disc}, mask))
    out.update(_offpolicy_metrics(mask, log_w, w_disc))
    return out


def _offpolicy_metrics(mask: torch.Tensor, log_w: torch.Tensor, w_disc: torch.Tensor) -> dict[str, torch.Tensor]:
    """ESS and verl's ``rollout_corr`` diagnostics of ``w_disc = pi_prox / mu`` (``log_w`` its log).

    ``ess = (sum w)^2 / (N sum w^2)``; ``chi2_token = E_tok[w^2] - 1`` and ``chi2_seq = E_seq[(prod_t w_t)^2] - 1``
    (the chi-square divergence of pi_prox from mu, i.e. the variance of the IS weights);
    ``ppl_ratio = E_seq[ppl_prox / ppl_mu]`` with ``ppl = exp(-mean_t logp)`` per sequence, and
    ``log_ppl_diff = E_seq[mean_t (behav - prox)]``. Token sums take ``m w`` (``m`` the mask; products in the
    inputs' dtype, sums in float64); sequence means run over non-empty sequences (verl averages over every row).
    """
    f64 = torch.float64
    w = w_disc * mask
    lengths, lw_seq = mask.sum(-1, dtype=f64), (log_w * mask).sum(-1, dtype=f64)
    n_tok, w_sum, w2_sum = torch.stack([lengths.sum(), w.sum(dtype=f64), w.square().sum(dtype=f64)]).unbind()
    seq = (lengths > 0).to(f64)
    log_ppl_diff = -lw_seq / lengths.clamp(min=1.0)  # mean_t behav - mean_t prox = log(ppl_prox / ppl_mu)
    seq_w2 = torch.exp(2.0 * lw_seq.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND))
    per_seq_terms = torch.stack([seq_w2 - 1.0, log_ppl_diff.exp(), log_ppl_diff])
    seq_means = (per_seq_terms * seq).sum(-1) / seq.sum().clamp(min=1.0)
    vals = torch.cat([
        torch.stack([w_sum**2 / (n_tok * w2_sum).clamp(min=1e-300), (w2_sum - n_tok) / n_tok.clamp(min=1.0)]),
        seq_means,
    ])
    names = ("w_disc/ess", "rollout_corr/chi2_token", "rollout_corr/chi2_seq", "rollout_corr/ppl_ratio",
             "rollout_corr/log_ppl_diff")
    return dict(zip(names, vals.unbind(), strict=True))
