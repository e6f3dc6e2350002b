"""The typed batch of response pairs that every preference loss consumes.

A row holds one prompt and two responses to it: ``chosen`` (y_w, the preferred one) and ``rejected``
(y_l). For a loss that takes two scored samples instead of a labelled pair (P3O, BRAIn) the names mean
"first" and "second" and the rewards decide; those losses are symmetric under the swap. Each side is a
right-padded ``[B, T_side]`` batch in the vocabulary of :class:`ratiolab.types.PolicyLossInputs`
(``logp`` carries the gradient; ``prox_logp`` and ``ref_logp`` are stored constants); the two sides may
have different lengths ``T``. Construction checks shapes, dtypes and gradients (no host sync);
:meth:`PreferenceBatch.check_values` checks the values in one host sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

SIDES = ("chosen", "rejected")
#: per-token fields of each side (``{side}_{name}``); ``logp`` and ``mask`` are required
_TOKEN = ("logp", "mask", "prox_logp", "ref_logp")
_STORED = ("prox_logp", "ref_logp")


@dataclass(frozen=True)
class PreferenceBatch:
    """``B`` response pairs: per side ``{side}_logp`` and ``{side}_mask`` (``[B, T_side]``, required),
    optional ``{side}_prox_logp`` / ``{side}_ref_logp`` (``[B, T_side]``, no grad) and ``{side}_reward``
    (``[B]``, a reward-model score per response).

    Optional fields come in pairs: give a field for both sides or for neither. ``num_pairs`` and
    ``num_tokens`` are the global normalisers of the whole optimisation batch (pairs; valid tokens of both
    sides); leave them ``None`` for a full batch, :meth:`split` fills them for micro-batches.
    """

    chosen_logp: torch.Tensor
    rejected_logp: torch.Tensor
    chosen_mask: torch.Tensor
    rejected_mask: torch.Tensor
    chosen_prox_logp: torch.Tensor | None = None
    rejected_prox_logp: torch.Tensor | None = None
    chosen_ref_logp: torch.Tensor | None = None
    rejected_ref_logp: torch.Tensor | None = None
    chosen_reward: torch.Tensor | None = None
    rejected_reward: torch.Tensor | None = None
    num_pairs: float | None = None
    num_tokens: float | None = None

    def __post_init__(self) -> None:
        for side in SIDES:
            for name in ("logp", "mask"):
                if not isinstance(getattr(self, f"{side}_{name}"), torch.Tensor):
                    raise ValueError(f"PreferenceBatch.{side}_{name} must be a torch.Tensor of shape [B, T]")
            logp = getattr(self, f"{side}_logp")
            if logp.dim() != 2 or not logp.is_floating_point():
                raise ValueError(f"PreferenceBatch.{side}_logp must be a 2-D [B, T] float tensor, got shape "
                                 f"{tuple(logp.shape)} and dtype {logp.dtype}")
            mask = getattr(self, f"{side}_mask")
            if not mask.is_floating_point():
                object.__setattr__(self, f"{side}_mask", mask.to(logp.dtype))
        b = self.chosen_logp.shape[0]
        if self.rejected_logp.shape[0] != b:
            raise ValueError(f"PreferenceBatch: chosen_logp has {b} rows but rejected_logp has "
                             f"{self.rejected_logp.shape[0]}; row i of both sides must be the same prompt")
        for name in (*_TOKEN, "reward"):
            given = [getattr(self, f"{side}_{name}") is not None for side in SIDES]
            if given[0] != given[1]:
                raise ValueError(f"PreferenceBatch: give both chosen_{name} and rejected_{name} or neither")
        for side in SIDES:
            want = getattr(self, f"{side}_logp").shape
            for name in _TOKEN:
                t = getattr(self, f"{side}_{name}")
                if t is None:
                    continue
                if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                    raise ValueError(f"PreferenceBatch.{side}_{name} must be a float torch.Tensor")
                if t.shape != want:
                    raise ValueError(f"PreferenceBatch.{side}_{name} has shape {tuple(t.shape)} but {side}_logp "
                                     f"has {tuple(want)}; all per-token tensors of one side must match")
                if name in _STORED and t.requires_grad:
                    raise ValueError(f"PreferenceBatch.{side}_{name} requires grad; stored log-probs are "
                                     f"constants: pass {side}_{name}.detach()")
            r = getattr(self, f"{side}_reward")
            if r is not None:
                if not isinstance(r, torch.Tensor) or r.shape != (b,) or not r.is_floating_point():
                    raise ValueError(f"PreferenceBatch.{side}_reward must be a float [B] = [{b}] tensor, got "
                                     f"{tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__}")
                if r.requires_grad:
                    raise ValueError(f"PreferenceBatch.{side}_reward requires grad; pass {side}_reward.detach()")
        for name in ("num_pairs", "num_tokens"):
            v = getattr(self, name)
            if v is not None and (not math.isfinite(v) or v <= 0):
                raise ValueError(f"PreferenceBatch.{name} must be a positive count, got {v}")

    @classmethod
    def from_groups(
        cls, *, logp: torch.Tensor, mask: torch.Tensor, seq_ids: torch.Tensor, prox_logp: torch.Tensor | None = None,
        ref_logp: torch.Tensor | None = None, rewards: torch.Tensor | None = None, order: str = "reward",
    ) -> PreferenceBatch:
        """Pairs from a ``[2P, T]`` batch whose prompt groups (``seq_ids``, ``[2P]``) hold two rows each, as a
        sampler with group size 2 produces; ``rewards`` (``[2P]``) become the sides' rewards. ``order="reward"``
        makes the higher-reward row of each pair ``chosen`` (the first on a tie); ``"given"`` keeps row order.
        Indexing keeps the gradient: it flows back to ``logp``. Pairs follow the order of the sorted group ids.
        """
        if order not in ("reward", "given"):
            raise ValueError(f"PreferenceBatch.from_groups: order must be 'reward' or 'given', got {order!r}")
        if order == "reward" and rewards is None:
            raise ValueError("PreferenceBatch.from_groups: order='reward' needs rewards= (one per row)")
        if seq_ids.shape != logp.shape[:1] or seq_ids.is_floating_point():
            raise ValueError(f"PreferenceBatch.from_groups: seq_ids must be an integer [{logp.shape[0]}] tensor, got "
                             f"{tuple(seq_ids.shape)} {seq_ids.dtype}")
        ids, inv, counts = torch.unique(seq_ids, return_inverse=True, return_counts=True)
        if bool((counts != 2).any()):
            g = int(ids[counts != 2][0])
            raise ValueError(f"PreferenceBatch.from_groups: group {g} has {int(counts[ids == g][0])} row(s); pairs "
                             "need exactly two responses per prompt (sample with group size 2)")
        rows = torch.argsort(inv, stable=True).view(-1, 2)  # [P, 2]: the two rows of each group, in row order
        if order == "reward":
            assert rewards is not None
            swap = rewards[rows[:, 1]] > rewards[rows[:, 0]]
            rows = torch.where(swap[:, None], rows.flip(-1), rows)
        first, second = rows[:, 0], rows[:, 1]
        opt = {"prox_logp": prox_logp, "ref_logp": ref_logp, "reward": rewards}
        sides: dict[str, Any] = {f"{side}_{k}": (None if v is None else v[idx]) for k, v in opt.items()
                                 for side, idx in (("chosen", first), ("rejected", second))}
        return cls(chosen_logp=logp[first], rejected_logp=logp[second], chosen_mask=mask[first],
                   rejected_mask=mask[second], **sides)

    def _tensors(self) -> list[tuple[str, torch.Tensor]]:
        return [(f.name, t) for f in fields(self) if isinstance(t := getattr(self, f.name), torch.Tensor)]

    def check_values(self) -> None:
        """Every tensor finite and both masks in ``[0, 1]``, in one host sync (a non-finite reward-model
        score is an error here: drop or zero-weight the pair before building the batch)."""
        present = [(n, t.detach()) for n, t in self._tensors()]
        total = torch.stack([t.abs().sum(dtype=torch.float64) for _, t in present]).sum()
        out = sum(((m < 0) | (m > 1)).sum(dtype=torch.float64) for m in (self.chosen_mask, self.rejected_mask))
        total_v, mask_bad = torch.stack([total, torch.as_tensor(out, dtype=torch.float64)]).tolist()
        if not math.isfinite(total_v):
            for name, t in present:
                bad = int((~torch.isfinite(t)).sum())
                if bad:
                    raise ValueError(f"PreferenceBatch.{name} has {bad} non-finite value(s); fill padding with 0, "
                                     "and drop (or zero-weight) pairs whose reward model returned NaN")
        if mask_bad:
            raise ValueError("PreferenceBatch masks must lie in [0, 1] (1 = trained response token)")

    @property
    def batch_size(self) -> int:
        return int(self.chosen_logp.shape[0])

    def sums(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(chosen, rejected)`` sequence sums ``sum_t mask * {side}_{name}`` (``[B]`` each; gradient kept)."""
        out = []
        for side in SIDES:
            t = getattr(self, f"{side}_{name}")
            if t is None:
                raise ValueError(f"PreferenceBatch.{side}_{name} is None; this loss needs it")
            out.append((t * getattr(self, f"{side}_mask")).sum(-1))
        return out[0], out[1]

    def rewards(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(chosen_reward, rejected_reward)``; a ``ValueError`` when the batch has none."""
        if self.chosen_reward is None or self.rejected_reward is None:
            raise ValueError("PreferenceBatch.chosen_reward / rejected_reward are None; this loss needs the "
                             "reward-model score of each response")
        return self.chosen_reward, self.rejected_reward

    def global_pairs(self) -> torch.Tensor:
        return self.chosen_logp.new_tensor(float(self.batch_size if self.num_pairs is None else self.num_pairs))

    def global_tokens(self) -> torch.Tensor:
        """Valid tokens of both sides over the whole optimisation batch."""
        local = self.chosen_mask.sum() + self.rejected_mask.sum()
        return local.new_full((), self.num_tokens) if self.num_tokens is not None else local.clamp(min=1.0)

    def upcast(self) -> PreferenceBatch:
        """Half-precision (bf16, fp16) tensors cast to float32; gradients still flow back to ``logp``."""
        half: dict[str, Any] = {n: t.float() for n, t in self._tensors() if t.dtype in (torch.bfloat16, torch.float16)}
        return replace(self, **half) if half else self

    def select(self, rows: torch.Tensor | slice) -> PreferenceBatch:
        """Rows ``rows`` of every tensor; the global normalisers are kept."""
        picked: dict[str, Any] = {n: t[rows] for n, t in self._tensors()}
        return replace(self, **picked)

    def split(self, num_micro: int) -> list[PreferenceBatch]:
        """``num_micro`` row chunks carrying this batch's global normalisers, so that the micro-batch losses
        (and gradients) sum to the full batch's."""
        if not 1 <= num_micro <= self.batch_size:
            raise ValueError(f"num_micro must be in [1, {self.batch_size}] (pairs), got {num_micro}")
        full = replace(self, num_pairs=float(self.global_pairs()), num_tokens=float(self.global_tokens()))
        return [full.select(idx) for idx in torch.arange(self.batch_size).chunk(num_micro)]
