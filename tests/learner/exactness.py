"""Shared check: recorded old logits equal a from-scratch forward with each token's version's weights."""

from __future__ import annotations

from typing import Any

import torch

from ratiolab.correction.old_logits import score_batch


def assert_exact_old_logits(
    batches: list[tuple[Any, torch.Tensor]], published: dict[int, dict[str, torch.Tensor]], model: torch.nn.Module
) -> None:
    """Every valid token's ``prox`` matches its version to 1e-6; >= 3 versions and a mixed sequence seen."""
    versions_seen: set[int] = set()
    mixed = 0
    for exp, prox in batches:
        ro = exp.rollout
        valid = ro.mask > 0
        mixed += sum(int(row[m].unique().numel() > 1) for row, m in zip(ro.version, valid, strict=True))
        for v in ro.version[valid].unique().tolist():
            model.load_state_dict(published[v])
            sel = valid & (ro.version == v)
            assert torch.allclose(prox[sel], score_batch(model, exp, 1.0)[sel], atol=1e-6, rtol=0), v
            versions_seen.add(v)
    assert len(versions_seen) >= 3
    assert mixed > 0, "no partial rollout mixed two versions; mid-generation weight swaps were not exercised"
