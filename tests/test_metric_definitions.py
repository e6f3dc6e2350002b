"""``compute``'s stacked metric path against the per-metric definitions, one plain reduction per metric.

The metrics are computed from a few stacked reductions (:func:`ratiolab.masked.masked_stats` reduces
``r_stale`` and ``w_disc`` in one pass, the masked means share one division); these references compute each
metric on its own, over the valid tokens picked by boolean indexing, in float64, with ``torch.quantile``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from lossdata import random_inputs

from ratiolab.correction.ratio import LOG_RATIO_BOUND
from ratiolab.masked import masked_stats
from ratiolab.objectives import compute
from ratiolab.types import PolicyLossInputs

F64 = torch.float64


def reference(inputs: PolicyLossInputs, kl_kind: str | None = None) -> dict[str, float]:
    """Every metric ``compute`` adds around the objective, one definition at a time."""
    m = inputs.mask.double()
    logp, prox = inputs.logp.detach().double(), inputs.prox_logp.double()
    lr = (logp - prox).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    r = inputs.logp.detach().sub(inputs.prox_logp).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND).exp().double()
    valid = inputs.mask > 0

    def mean(x: torch.Tensor) -> float:
        return float((x.double() * m).sum() / m.sum().clamp(min=1.0))

    def stats(x: torch.Tensor, prefix: str) -> dict[str, float]:
        vals = x.double()[valid]
        if vals.numel() == 0:
            return {f"{prefix}/{k}": 0.0 for k in ("mean", "min", "max", "p99")}
        return {f"{prefix}/mean": float(vals.mean()), f"{prefix}/min": float(vals.min()),
                f"{prefix}/max": float(vals.max()), f"{prefix}/p99": float(torch.quantile(vals, 0.99))}

    out = {"approx_kl": mean(r - 1.0 - lr), "ratio/log_clamp_frac": mean((logp - prox).abs() > LOG_RATIO_BOUND),
           **stats(r, "r_stale")}
    if inputs.entropy is not None:
        out["entropy"] = mean(inputs.entropy)
    if kl_kind is not None:  # k3 of KL(theta || ref)
        assert inputs.ref_logp is not None
        d = inputs.ref_logp.double() - logp  # ref / theta, inside kl.K3_LOG_BOUND here
        out[f"kl/{kl_kind}"] = mean(d.exp() - 1.0 - d)
    if inputs.behav_logp is None:
        return out
    lw = (inputs.prox_logp - inputs.behav_logp).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    w = lw.exp()
    out.update(stats(w, "w_disc"))
    wm = w.double() * m
    n = m.sum()
    out["w_disc/ess"] = float(wm.sum() ** 2 / (n * wm.square().sum()))
    out["rollout_corr/chi2_token"] = float(wm.square().sum() / n - 1.0)
    length, lw_sum = m.sum(-1), (lw.double() * m).sum(-1)
    seq = length > 0
    per_tok = lw_sum[seq] / length[seq]  # mean_t log(prox / behav)
    seq_w = lw_sum[seq].clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND).exp()  # prod_t w_t, log clamped as every ratio
    out["rollout_corr/chi2_seq"] = float(seq_w.square().mean() - 1.0)
    out["rollout_corr/ppl_ratio"] = float((-per_tok).exp().mean())
    out["rollout_corr/log_ppl_diff"] = float((-per_tok).mean())
    return out


def big_float32(seed: int = 0, b: int = 64, t: int = 256) -> PolicyLossInputs:
    """The objectives benchmark's batch shape in float32, 90 % valid tokens."""
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, t, generator=g) * 3
    return PolicyLossInputs(logp=logp.clone().requires_grad_(), prox_logp=logp + 0.1 * torch.randn(b, t, generator=g),
                            behav_logp=logp + 0.1 * torch.randn(b, t, generator=g), adv=torch.randn(b, t, generator=g),
                            mask=(torch.rand(b, t, generator=g) < 0.9).float(), entropy=torch.rand(b, t, generator=g))


def fractional(inputs: PolicyLossInputs) -> PolicyLossInputs:
    """Mask weights in (0, 1] on the valid tokens (0 stays 0)."""
    g = torch.Generator().manual_seed(7)
    return replace(inputs, mask=inputs.mask * (0.2 + 0.8 * torch.rand(inputs.mask.shape, generator=g,
                                                                         dtype=inputs.mask.dtype)))


def clamped(inputs: PolicyLossInputs) -> PolicyLossInputs:
    """Two tokens whose log-ratio is past the clamp bound (one each way)."""
    prox = inputs.prox_logp.clone()
    prox[0, 0] = inputs.logp[0, 0].detach() - 25.0
    prox[1, 0] = inputs.logp[1, 0].detach() + 30.0
    return replace(inputs, prox_logp=prox)


CASES = {
    "float64 ragged": (random_inputs(1, b=6, t=7), 1e-12),
    "float64 fractional mask": (fractional(random_inputs(2, b=5, t=9)), 1e-12),
    "float64 clamp bites": (clamped(random_inputs(3, b=4, t=6)), 1e-12),
    "float64 no behaviour": (random_inputs(4, b=6, t=5, behav=False), 1e-12),
    "float32 benchmark batch": (big_float32(), 1e-5),
    "float32 fractional mask": (fractional(big_float32(1, b=16, t=64)), 1e-5),
}


@pytest.mark.parametrize("case", CASES)
def test_compute_metrics_equal_their_definitions(case: str) -> None:
    inputs, rel = CASES[case]
    kw = {"kl_coef": 0.1, "kl_kind": "k3"} if inputs.ref_logp is not None else {}
    got = compute("pg", inputs, **kw).metrics
    want = reference(inputs, "k3" if kw else None)
    for key, value in want.items():
        assert float(got[key]) == pytest.approx(value, rel=rel, abs=1e-12), key


def test_empty_mask_metrics_are_zero() -> None:
    inputs = replace(random_inputs(5, b=3, t=4), mask=torch.zeros(3, 4, dtype=F64))
    got = compute("pg", inputs).metrics
    for key in ("r_stale/mean", "r_stale/min", "r_stale/max", "r_stale/p99", "w_disc/p99", "approx_kl"):
        assert float(got[key]) == 0.0, key


@pytest.mark.parametrize("n", [1, 2, 3, 57, 99, 100, 101, 150, 199, 200, 257])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_masked_stats_equals_quantile_min_max_mean_per_tensor(n: int, dtype: torch.dtype) -> None:
    """Stacked stats of three tensors, ``n`` valid values of 300 (so the p99 falls anywhere in the top-k)."""
    g = torch.Generator().manual_seed(n)
    xs = {name: torch.randn(3, 100, generator=g, dtype=dtype) * s for name, s in (("a", 1.0), ("b", 5.0), ("c", 0.1))}
    mask = torch.zeros(300, dtype=dtype)
    mask[torch.randperm(300, generator=g)[:n]] = 1.0
    mask = mask.reshape(3, 100)
    got = masked_stats(xs, mask)
    for name, x in xs.items():
        vals = x[mask > 0].double()
        want = {"mean": vals.mean(), "min": vals.min(), "max": vals.max(), "p99": torch.quantile(vals, 0.99)}
        for stat, value in want.items():
            assert float(got[f"{name}/{stat}"]) == pytest.approx(float(value), rel=1e-12, abs=1e-12), (name, stat)
