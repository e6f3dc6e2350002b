"""Discrepancy corrections acting on ``w_disc`` only (async-correction.md §3, [verified: code] ROLL).

A correction turns ``w_disc = pi_{v}/mu_{v}`` into a per-token constant ``weight`` and a 0/1
``keep`` mask; the objective's per-token loss on ``r_stale`` is multiplied by both, and the
aggregation divides by the *valid* tokens (``mask_denominator = valid``, the spec's Decision),
so masking never rescales the gradient of kept tokens.

| kind       | weight                                  | keep                                   |
|------------|-----------------------------------------|----------------------------------------|
| `none`     | w_disc, untouched                       | 1                                      |
| `ignore`   | 1 (the discrepancy is not corrected)    | 1                                      |
| `truncate` | clamp(w, low, high); token or sequence  | 1                                      |
| `mask`     | w_disc (or 1 with ``weight=False``)     | token / sequence / geometric band,     |
|            |                                         | plus an optional catastrophic mask     |

Sequence statistics are the exact product ``exp(sum_t log w_t)``; the geometric statistic
is ``exp(mean_t log w_t)`` (length-normalised). Note the naming against the spec's table:
its "none" (w = 1) is ``ignore`` here; ``none`` means "w_disc as computed, uncorrected".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ratiolab.correction.ratio import LOG_RATIO_BOUND
from ratiolab.masked import masked_frac
from ratiolab.registry import Registry

CORRECTIONS = Registry("correction")

#: Default bands of the ``mask`` correction per level (async-correction.md §3 and §10).
MASK_BANDS = {"token": (0.5, 2.0), "sequence": (0.1, 10.0), "geometric": (1 / 1.001, 1.001)}


@dataclass(frozen=True)
class Corrected:
    """Per-token ``weight`` (no grad), 0/1 ``keep`` mask and the correction's diagnostics."""

    weight: torch.Tensor
    keep: torch.Tensor
    metrics: dict[str, float]


def apply(kind: str, w_disc: torch.Tensor, mask: torch.Tensor, **params: Any) -> Corrected:
    """Apply the discrepancy correction ``kind`` (``none | ignore | truncate | mask``) to ``w_disc``."""
    p = CORRECTIONS.resolve(kind, params)
    if w_disc.requires_grad:
        raise ValueError("w_disc requires grad; correction weights are constants: pass w_disc.detach()")
    if w_disc.shape != mask.shape:
        raise ValueError(f"w_disc shape {tuple(w_disc.shape)} does not match mask {tuple(mask.shape)}")
    out: Corrected = CORRECTIONS.get(kind).fn(w_disc, mask.to(w_disc.dtype), **p)
    return out


def _seq_log(w: torch.Tensor, mask: torch.Tensor, level: str) -> torch.Tensor:
    """Per-sequence log statistic: sum (exact product) or mean (geometric) of ``log w``, ``[B, 1]``."""
    logw = torch.log(w.clamp(min=torch.finfo(w.dtype).tiny)) * mask
    total = logw.sum(-1, keepdim=True)
    if level == "geometric":
        total = total / mask.sum(-1, keepdim=True).clamp(min=1.0)
    return total.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)


def _check_level(kind: str, level: str, allowed: tuple[str, ...]) -> None:
    if level not in allowed:
        raise ValueError(f"correction {kind!r}: level must be one of {allowed}, got {level!r}")


def _check_band(kind: str, low: float, high: float) -> None:
    if not (0.0 <= low < high):
        raise ValueError(f"correction {kind!r}: need 0 <= low < high, got low={low}, high={high}")


@CORRECTIONS.register("none", arxiv="2605.12070", summary="w_disc as a fixed per-token weight, uncorrected")
def _none(w: torch.Tensor, mask: torch.Tensor) -> Corrected:
    return Corrected(w, torch.ones_like(w), {})


@CORRECTIONS.register("ignore", arxiv="", summary="weight 1: the discrepancy factor is dropped")
def _ignore(w: torch.Tensor, mask: torch.Tensor) -> Corrected:
    return Corrected(torch.ones_like(w), torch.ones_like(w), {})


@CORRECTIONS.register(
    "truncate", arxiv="2605.12070", summary="truncated IS (TIS): clamp w_disc per token or per sequence"
)
def _truncate(
    w: torch.Tensor, mask: torch.Tensor, *, level: str = "token", low: float = 0.0, high: float = 2.0
) -> Corrected:
    """``weight = clamp(stat, low, high)``, stat = w_t (token) or prod_t w_t (sequence, broadcast)."""
    _check_level("truncate", level, ("token", "sequence"))
    _check_band("truncate", low, high)
    stat = w if level == "token" else _seq_log(w, mask, level).exp().expand_as(w)
    metrics = {
        "correction/trunc_low_frac": masked_frac(stat < low, mask),
        "correction/trunc_high_frac": masked_frac(stat > high, mask),
    }
    return Corrected(stat.clamp(low, high), torch.ones_like(w), metrics)


@CORRECTIONS.register(
    "mask", arxiv="2605.12070", summary="drop tokens/sequences whose w_disc leaves a band (+ catastrophic)"
)
def _mask(
    w: torch.Tensor,
    mask: torch.Tensor,
    *,
    level: str = "token",
    low: float | None = None,
    high: float | None = None,
    catastrophic: float | None = None,
    weight: bool = True,
) -> Corrected:
    """Keep a token iff its statistic lies in ``[low, high]`` (defaults :data:`MASK_BANDS`).

    ``catastrophic=c`` also drops every sequence with a valid token of ``w_t < c`` (ROLL: 1e-4).
    ``weight=True`` multiplies the kept tokens by ``w_disc`` (weight_and_mask), else by 1 (mask_only).
    """
    _check_level("mask", level, tuple(MASK_BANDS))
    lo = MASK_BANDS[level][0] if low is None else low
    hi = MASK_BANDS[level][1] if high is None else high
    _check_band("mask", lo, hi)
    stat = w if level == "token" else _seq_log(w, mask, level).exp().expand_as(w)
    keep = (stat >= lo) & (stat <= hi)
    metrics = {f"correction/mask_{level}_frac": masked_frac(~keep, mask)}
    if catastrophic is not None:
        if catastrophic <= 0:
            raise ValueError(f"correction 'mask': catastrophic must be > 0, got {catastrophic}")
        bad_seq = ((w < catastrophic) & (mask > 0)).any(-1, keepdim=True).expand_as(w)
        metrics["correction/mask_catastrophic_frac"] = masked_frac(bad_seq, mask)
        keep = keep & ~bad_seq
    return Corrected(w if weight else torch.ones_like(w), keep.to(w.dtype), metrics)
