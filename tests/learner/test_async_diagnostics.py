"""The learner loop's async diagnostics (one host transfer) against their per-metric definitions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ratiolab.learner.loop import async_diagnostics


def reference(s: SimpleNamespace, learner_version: int, max_staleness: int) -> dict[str, float]:
    """Each metric on its own, over the trained tokens picked by boolean indexing, a Python loop over rows."""
    ro, m = s.exp.rollout, s.mask > 0
    stale = (learner_version - ro.version)[m].double()
    log_w = (s.prox_logp - ro.behav_logp.float()).double()[m]
    out = {"staleness/mean": float(stale.mean()), "staleness/max": float(stale.max())}
    for k in range(max_staleness + 1):
        out[f"staleness/frac_{k}"] = float((stale == k).double().mean())
        if bool((stale == k).any()):
            out[f"w_disc/abs_log_s{k}"] = float(log_w[stale == k].abs().mean())
    rows = [len(set(row[keep].tolist())) > 1 for row, keep in zip(ro.version, m, strict=True)]
    out["partial/seq_frac"] = sum(rows) / len(rows)
    out["kl_behav_prox/k1"] = float((-log_w).mean())
    out["kl_behav_prox/k3"] = float((log_w.exp() - 1.0 - log_w).mean())
    return out


def batch(seed: int, b: int = 7, t: int = 6, version: int = 5) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, t, generator=g) < 0.8).float()
    mask[2] = 0.0  # an empty row
    versions = version - torch.randint(0, 3, (b, t), generator=g)  # staleness 0..2 (3 never occurs)
    versions[0] = version  # one row from a single version
    prox = -torch.rand(b, t, generator=g)
    rollout = SimpleNamespace(version=versions, behav_logp=(prox + 0.1 * torch.randn(b, t, generator=g)).bfloat16())
    return SimpleNamespace(exp=SimpleNamespace(rollout=rollout), mask=mask, prox_logp=prox)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_async_diagnostics_equal_their_definitions(seed: int) -> None:
    s = batch(seed)
    got = async_diagnostics(s, 5, 3)  # type: ignore[arg-type]
    want = reference(s, 5, 3)
    assert "w_disc/abs_log_s3" not in got  # no token at staleness 3: no key
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


def test_async_diagnostics_without_trained_tokens_are_zero() -> None:
    s = batch(0)
    s.mask = torch.zeros_like(s.mask)
    got = async_diagnostics(s, 5, 2)  # type: ignore[arg-type]
    assert all(v == 0.0 for v in got.values()) and not any(k.startswith("w_disc/") for k in got)
