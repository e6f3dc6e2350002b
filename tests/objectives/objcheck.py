"""Helpers for the objective-catalogue tests: small float64 batches and the checks every objective needs."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from ratiolab.objectives import MODES, compute
from ratiolab.types import PolicyLossInputs


def row(values: list[float]) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float64)


def one_row(logp: list[float], prox: list[float], adv: list[float], **extra: list[float]) -> PolicyLossInputs:
    """A one-sequence batch (all tokens valid) with grad on ``logp``; ``extra`` holds other log-prob rows."""
    return PolicyLossInputs(logp=row(logp).requires_grad_(), prox_logp=row(prox), adv=row(adv),
                            mask=torch.ones(1, len(logp), dtype=torch.float64),
                            **{k: row(v) for k, v in extra.items()})


def column(logp: list[float], prox: list[float], adv: list[float], **kw: Any) -> PolicyLossInputs:
    """One token per sequence: ``[B, 1]`` tensors (groups of one-token responses)."""
    col = lambda v: torch.tensor(v, dtype=torch.float64)[:, None]  # noqa: E731
    return PolicyLossInputs(logp=col(logp).requires_grad_(), prox_logp=col(prox), adv=col(adv),
                            mask=torch.ones(len(logp), 1, dtype=torch.float64), **kw)


def loss_grad(name: str, inputs: PolicyLossInputs, **params: Any) -> tuple[float, list[float], dict[str, float]]:
    """Loss, flattened ``dL/dlogp`` and metrics of ``compute(name, inputs, **params)``."""
    out = compute(name, inputs, **params)
    (g,) = torch.autograd.grad(out.loss, inputs.logp)
    return float(out.loss.detach()), g.flatten().tolist(), out.metrics


def batch(seed: int = 0, b: int = 7, t: int = 6, scale: float = 0.3) -> PolicyLossInputs:
    """Random ragged batch with every optional field, two turns per row and groups of two rows."""
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 2 - 0.1
    lengths = torch.randint(2, t + 1, (b,), generator=g)
    lengths[2] = 0
    mask = (torch.arange(t)[None, :] < lengths[:, None]).to(torch.float64)
    noise = lambda: torch.randn(b, t, generator=g, dtype=torch.float64) * scale  # noqa: E731
    return PolicyLossInputs(
        logp=logp.clone().requires_grad_(), prox_logp=logp + noise(),
        adv=torch.randn(b, t, generator=g, dtype=torch.float64), mask=mask,
        behav_logp=logp + noise(), ref_logp=logp + noise(),
        entropy=torch.rand(b, t, generator=g, dtype=torch.float64),
        seq_ids=torch.arange(b) // 2, turn_ids=(torch.arange(t)[None, :] >= t // 2).long().expand(b, t).clone(),
    )


def check_identity(name: str, **params: Any) -> None:
    """All log-probs equal: no clipping, masking or dual clip fires and the loss is finite."""
    base = batch(1)
    lp = base.logp.detach()
    inputs = PolicyLossInputs(logp=lp.clone().requires_grad_(), prox_logp=lp.clone(), adv=base.adv, mask=base.mask,
                              behav_logp=lp.clone(), ref_logp=lp.clone(), turn_ids=base.turn_ids,
                              seq_ids=base.seq_ids, entropy=base.entropy)
    out = compute(name, inputs, **params)
    for k, v in out.metrics.items():
        if "clip_frac" in k or "mask" in k or "cap_frac" in k:
            assert v == 0.0, k
    assert math.isfinite(out.loss.item())


def check_log_gaps(name: str, **params: Any) -> None:
    """Log-prob gaps of +-50 between every pair of policies give a finite loss and gradient."""
    base = batch(2)
    lp = base.logp.detach()
    for gap in (50.0, -50.0):
        inputs = PolicyLossInputs(logp=lp.clone().requires_grad_(), prox_logp=lp - gap, adv=base.adv, mask=base.mask,
                                  behav_logp=lp - 2 * gap, ref_logp=lp + gap, turn_ids=base.turn_ids,
                                  seq_ids=base.seq_ids, entropy=base.entropy)
        out = compute(name, inputs, **params)
        (g,) = torch.autograd.grad(out.loss, inputs.logp)
        assert math.isfinite(out.loss.item()) and bool(torch.isfinite(g).all()), gap
        assert all(math.isfinite(v) for v in out.metrics.values())


def check_micro_batches(name: str, modes: tuple[str, ...] = MODES, **params: Any) -> None:
    """Gradients and losses of 3 micro-batches (global normalisers) sum to the full batch's."""
    inputs = batch(3)
    for mode in modes:
        p = {"aggregation": mode, "sum_norm_constant": 6.0, **params}
        full = compute(name, inputs, **p)
        (g_full,) = torch.autograd.grad(full.loss, inputs.logp)
        g_acc, loss_acc = torch.zeros_like(g_full), 0.0
        for micro in inputs.split(3):
            out = compute(name, micro, **p)
            (g,) = torch.autograd.grad(out.loss, inputs.logp)
            g_acc, loss_acc = g_acc + g, loss_acc + out.loss.item()
        assert loss_acc == pytest.approx(full.loss.item(), abs=1e-12), mode
        assert torch.allclose(g_acc, g_full, atol=1e-12), mode


def check_all(name: str, modes: tuple[str, ...] = MODES, **params: Any) -> None:
    check_identity(name, **params)
    check_log_gaps(name, **params)
    check_micro_batches(name, modes, **params)
