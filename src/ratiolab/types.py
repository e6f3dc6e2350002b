"""The typed batch that every policy objective consumes, and what it returns.

Vocabulary (DESIGN §1): per token of a ``[B, T]`` right-padded batch,

- ``logp``       log pi_theta, the current learner policy (carries the gradient);
- ``prox_logp``  log pi_{theta_v}, the training-side policy of the generating version ("old logits");
- ``behav_logp`` log mu_v, what the inference engine reported when it sampled the token;
- ``ref_logp``   the frozen reference policy, for KL regularisation.

Stored log-probs (everything but ``logp`` and ``entropy``) must not require grad: correction
weights are constants. Validation errors name the field and say how to fix it: construction checks
shapes, dtypes and gradients (no host sync); :meth:`PolicyLossInputs.check_values` checks the values
(finite, mask in [0, 1]) in one host sync, once per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

_STORED = ("prox_logp", "behav_logp", "ref_logp", "adv")
_FLOAT_BT = ("logp", "prox_logp", "adv", "behav_logp", "ref_logp", "entropy")


@dataclass(frozen=True)
class PolicyLossInputs:
    """One optimisation (micro-)batch for a policy objective.

    Required ``[B, T]`` float tensors: ``logp``, ``prox_logp``, ``adv``, ``mask`` (1 on trained
    response tokens including EOS, 0 on prompt and padding; a bool mask is converted).
    Optional: ``behav_logp``, ``ref_logp``, ``entropy`` (``[B, T]`` float), ``version`` and
    ``turn_ids`` (``[B, T]`` integer: generating policy version, turn index of each token),
    ``seq_ids`` (``[B]`` integer: the prompt group of each row; rows sampled for one prompt share it).

    ``num_tokens`` and ``num_seqs`` are the *global* normalisers of the whole optimisation batch
    (valid tokens, and sequences with at least one valid token). Leave them ``None`` for a full
    batch; :meth:`split` fills them so that micro-batch gradients sum to the full-batch gradient.
    """

    logp: torch.Tensor
    prox_logp: torch.Tensor
    adv: torch.Tensor
    mask: torch.Tensor
    behav_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None
    version: torch.Tensor | None = None
    seq_ids: torch.Tensor | None = None
    turn_ids: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    num_tokens: float | None = field(default=None)
    num_seqs: float | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("logp", "prox_logp", "adv", "mask"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise ValueError(f"PolicyLossInputs.{name} must be a torch.Tensor of shape [B, T]")
        if self.logp.dim() != 2:
            raise ValueError(
                f"PolicyLossInputs.logp must be 2-D [B, T], got shape {tuple(self.logp.shape)}; "
                "reshape per-token tensors to [batch, time]"
            )
        shape = self.logp.shape
        if self.mask.dtype == torch.bool or not self.mask.is_floating_point():
            object.__setattr__(self, "mask", self.mask.to(self.logp.dtype if self.logp.is_floating_point()
                                                          else torch.float32))
        for name in (*_FLOAT_BT, "mask"):
            t = getattr(self, name)
            if t is None:
                continue
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"PolicyLossInputs.{name} must be a torch.Tensor or None")
            if t.shape != shape:
                raise ValueError(
                    f"PolicyLossInputs.{name} has shape {tuple(t.shape)} but logp has {tuple(shape)}; "
                    "all per-token tensors must be [B, T]"
                )
            if not t.is_floating_point():
                raise ValueError(f"PolicyLossInputs.{name} must be a floating tensor, got {t.dtype}")
        for name in _STORED:
            t = getattr(self, name)
            if t is not None and t.requires_grad:
                raise ValueError(
                    f"PolicyLossInputs.{name} requires grad; stored log-probs and advantages are "
                    f"constants: pass {name}.detach()"
                )
        for name, want in (("version", shape), ("turn_ids", shape), ("seq_ids", shape[:1])):
            t = getattr(self, name)
            if t is None:
                continue
            if t.shape != want:
                raise ValueError(
                    f"PolicyLossInputs.{name} has shape {tuple(t.shape)}, expected {tuple(want)}"
                )
            if t.is_floating_point() or t.dtype == torch.bool:
                raise ValueError(f"PolicyLossInputs.{name} must be an integer tensor, got {t.dtype}")
        for name in ("num_tokens", "num_seqs"):
            v = getattr(self, name)
            if v is not None and (not math.isfinite(v) or v <= 0):
                raise ValueError(f"PolicyLossInputs.{name} must be a positive count, got {v}")

    def check_values(self) -> None:
        """The value checks, in one host sync: every float tensor finite, ``mask`` in ``[0, 1]``.

        Construction checks only shapes, dtypes and ``requires_grad`` (no host sync);
        :func:`ratiolab.objectives.compute` runs these checks when ``validate=True`` (its default), and
        a learner passes ``validate=True`` on the first micro-batch of an optimiser step only.
        """
        present = [(n, t.detach()) for n in (*_FLOAT_BT, "mask") if (t := getattr(self, n)) is not None]
        # any NaN/inf makes the sum of absolute values non-finite; one stacked reduction for all tensors
        total = torch.stack([t for _, t in present]).abs().sum(dtype=torch.float64)
        lo, hi = torch.aminmax(self.mask) if self.mask.numel() else (self.mask.new_zeros(()), self.mask.new_zeros(()))
        total_v, lo_v, hi_v = torch.stack([total, lo.double(), hi.double()]).tolist()
        if not math.isfinite(total_v):
            for name, t in present:
                bad = int((~torch.isfinite(t)).sum())
                if bad:
                    raise ValueError(
                        f"PolicyLossInputs.{name} has {bad} non-finite value(s); fill padding with 0 "
                        "and check the producer of this tensor"
                    )
        if lo_v < 0 or hi_v > 1:
            raise ValueError("PolicyLossInputs.mask must lie in [0, 1] (1 = trained response token)")

    @property
    def batch_size(self) -> int:
        return int(self.logp.shape[0])

    def global_tokens(self) -> torch.Tensor:
        """Valid-token normaliser of the whole optimisation batch."""
        local = self.mask.sum()
        return local.new_full((), self.num_tokens) if self.num_tokens is not None else local.clamp(min=1.0)

    def global_seqs(self) -> torch.Tensor:
        """Number of non-empty sequences in the whole optimisation batch."""
        local = (self.mask.sum(-1) > 0).sum().to(self.mask.dtype)
        return local.new_full((), self.num_seqs) if self.num_seqs is not None else local.clamp(min=1.0)

    def select(self, rows: torch.Tensor | slice) -> PolicyLossInputs:
        """Rows ``rows`` of every tensor; the global normalisers are kept."""
        picked = {f.name: getattr(self, f.name)[rows] for f in fields(self)
                  if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **picked)

    def split(self, num_micro: int) -> list[PolicyLossInputs]:
        """Split rows into ``num_micro`` micro-batches carrying this batch's global normalisers.

        With ``seq_ids`` the split keeps every prompt group whole (group-relative objectives
        need complete groups), so ``num_micro`` may not exceed the number of groups.
        """
        groups = torch.arange(self.batch_size) if self.seq_ids is None else torch.unique(self.seq_ids)
        if num_micro < 1 or num_micro > len(groups):
            raise ValueError(f"num_micro must be in [1, {len(groups)}] (rows or prompt groups), got {num_micro}")
        full = replace(self, num_tokens=float(self.global_tokens()), num_seqs=float(self.global_seqs()))
        if self.seq_ids is None:
            return [full.select(idx) for idx in groups.chunk(num_micro)]
        return [full.select(torch.isin(self.seq_ids, part).nonzero().squeeze(-1)) for part in groups.chunk(num_micro)]


@dataclass(frozen=True)
class LossOutput:
    """A scalar loss (to minimise) and its diagnostics keyed by name.

    Every metric is a detached 0-d tensor on the loss's device (no host sync per call): reduce a step's
    metrics once with :func:`ratiolab.objectives.reduce_metrics` (one device-to-host transfer).
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
