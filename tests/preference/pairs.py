"""Helpers for the preference-loss tests: float64 pair batches and gradients."""

from __future__ import annotations

from typing import Any

import torch

from ratiolab.preference import PreferenceBatch, compute


def rows(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def pair(chosen: list[list[float]], rejected: list[list[float]], **extra: Any) -> PreferenceBatch:
    """All tokens valid, grad on both ``logp``; ``extra``: other fields as nested lists (rewards as [B] lists)."""
    c, r = rows(chosen).requires_grad_(), rows(rejected).requires_grad_()
    fields = {k: torch.tensor(v, dtype=torch.float64) for k, v in extra.items()}
    return PreferenceBatch(chosen_logp=c, rejected_logp=r, chosen_mask=torch.ones_like(c.detach()),
                           rejected_mask=torch.ones_like(r.detach()), **fields)


def loss_grads(name: str, batch: PreferenceBatch, **params: Any) -> tuple[float, list[float], list[float], dict]:
    """Loss, flattened ``dL/dchosen_logp`` and ``dL/drejected_logp``, and metrics."""
    out = compute(name, batch, **params)
    gc, gr = torch.autograd.grad(out.loss, (batch.chosen_logp, batch.rejected_logp))
    return float(out.loss.detach()), gc.flatten().tolist(), gr.flatten().tolist(), out.metrics


def random_batch(seed: int = 0, b: int = 6, tc: int = 5, tr: int = 4) -> PreferenceBatch:
    """Ragged random pairs with every optional field (different lengths on the two sides)."""
    g = torch.Generator().manual_seed(seed)

    def side(t: int) -> dict[str, torch.Tensor]:
        logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 2 - 0.1
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        mask = (torch.arange(t)[None, :] < lengths[:, None]).to(torch.float64)
        noise = lambda: torch.randn(b, t, generator=g, dtype=torch.float64) * 0.1  # noqa: E731
        return {"logp": logp.requires_grad_(), "mask": mask, "prox_logp": logp.detach() + noise(),
                "ref_logp": logp.detach() + noise()}

    c, r = side(tc), side(tr)
    return PreferenceBatch(
        **{f"chosen_{k}": v for k, v in c.items()}, **{f"rejected_{k}": v for k, v in r.items()},
        chosen_reward=torch.randn(b, generator=g, dtype=torch.float64),
        rejected_reward=torch.randn(b, generator=g, dtype=torch.float64),
    )


def check_micro_batches(name: str, **params: Any) -> None:
    """Losses and gradients of 3 micro-batches (global normalisers) sum to the full batch's."""
    full = random_batch(3)
    out = compute(name, full, **params)
    g_full = torch.autograd.grad(out.loss, (full.chosen_logp, full.rejected_logp))
    acc = [torch.zeros_like(g) for g in g_full]
    total = 0.0
    for micro in full.split(3):
        m = compute(name, micro, **params)
        for a, g in zip(acc, torch.autograd.grad(m.loss, (full.chosen_logp, full.rejected_logp)), strict=True):
            a += g
        total += float(m.loss.detach())
    assert abs(total - float(out.loss.detach())) < 1e-12
    for a, g in zip(acc, g_full, strict=True):
        assert torch.allclose(a, g, atol=1e-12)
