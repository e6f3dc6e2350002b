"""Token groups of a ``[B, T]`` batch (sequence, turn, timestep) and masked per-group means."""

from __future__ import annotations

import torch

from ratiolab.types import PolicyLossInputs

GROUPINGS = ("sequence", "turn", "timestep")


def group_keys(method: str, inputs: PolicyLossInputs, grouping: str) -> torch.Tensor:
    """``[B, T]`` integer key per token; tokens with equal keys form one group.

    ``sequence``: one group per row; ``turn``: one group per (row, ``turn_ids``) pair;
    ``timestep``: one group per column (token position / denoising step) across the batch.
    """
    b, t = inputs.logp.shape
    rows = torch.arange(b, device=inputs.logp.device)[:, None].expand(b, t)
    if grouping == "sequence":
        return rows
    if grouping == "timestep":
        return torch.arange(t, device=inputs.logp.device)[None, :].expand(b, t)
    if grouping != "turn":
        raise ValueError(f"{method}: grouping must be one of {GROUPINGS}, got {grouping!r}")
    if inputs.turn_ids is None:
        raise ValueError(f"{method}: turn grouping needs inputs.turn_ids ([B, T] turn index of each token)")
    turns = inputs.turn_ids.long()
    if bool((turns[inputs.mask > 0] < 0).any()):
        raise ValueError(f"{method}: inputs.turn_ids must be >= 0 on valid tokens")
    turns = turns.clamp(min=0)
    return rows * (int(turns.max()) + 1 if turns.numel() else 1) + turns


def group_mean(x: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of ``x`` over each token's group, broadcast back to ``[B, T]`` (gradient kept).

    Masked tokens contribute nothing; a group without valid tokens has mean 0.
    """
    _, inv = torch.unique(keys.reshape(-1), return_inverse=True)
    n = int(inv.max()) + 1 if inv.numel() else 0
    m = mask.reshape(-1).to(x.dtype)
    sums = torch.zeros(n, dtype=x.dtype, device=x.device).index_add(0, inv, x.reshape(-1) * m)
    counts = torch.zeros(n, dtype=x.dtype, device=x.device).index_add(0, inv, m)
    return (sums / counts.clamp(min=1.0))[inv].reshape(x.shape)


def is_partial(inputs: PolicyLossInputs) -> bool:
    """True when ``inputs`` is a micro-batch of a larger optimisation batch (see ``split``)."""
    return inputs.num_tokens is not None and inputs.num_tokens != float(inputs.mask.sum())
