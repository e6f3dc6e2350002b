"""R²VPO: a ratio-variance constraint instead of a hard clip, with a primal-dual multiplier."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ratiolab.masked import as_metric, masked_mean
from ratiolab.objectives.core import OBJECTIVES
from ratiolab.objectives.grouping import is_partial
from ratiolab.objectives.state import ObjectiveState
from ratiolab.types import PolicyLossInputs

VARIANCES = ("second_moment", "batch_variance")
DUALS = ("primal_dual", "fixed")
VAR_KEY = "r2vpo/ratio_var"


@dataclass
class R2vpoState(ObjectiveState):
    """The dual variable: ``lam <- max(0, lam + dual_lr (V - delta))`` once per optimiser step."""

    METHOD = "r2vpo"
    lam: float = 0.0
    delta: float = 0.05
    dual_lr: float = 0.1

    def __post_init__(self) -> None:
        _check("lam", self.lam, 0.0)
        _check("delta", self.delta, 0.0)
        if not self.dual_lr > 0:
            raise ValueError(f"r2vpo: dual_lr must be > 0, got {self.dual_lr}")

    def update(self, metrics: dict[str, float]) -> None:
        """Dual ascent on the step's ratio variance ``metrics['r2vpo/ratio_var']`` (a constant)."""
        if VAR_KEY not in metrics:
            raise ValueError(f"r2vpo: state.update needs metrics[{VAR_KEY!r}] from the step's compute()")
        self.lam = max(0.0, self.lam + self.dual_lr * (metrics[VAR_KEY] - self.delta))


def _check(name: str, value: float, low: float) -> None:
    if not value >= low:
        raise ValueError(f"r2vpo: {name} must be >= {low}, got {value}")


def make_r2vpo_state(*, lam_init: float = 0.0, delta: float = 0.05, dual_lr: float = 0.1, **_: object) -> R2vpoState:
    return R2vpoState(lam=lam_init, delta=delta, dual_lr=dual_lr)


@OBJECTIVES.register(
    "r2vpo", arxiv="2601.03320", summary="IS surrogate + lambda * (ratio variance - delta), dual-ascent lambda",
    experimental=True, state=make_r2vpo_state,
)
def r2vpo(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    variance: str = "second_moment",
    dual: str = "primal_dual",
    delta: float = 0.05,
    dual_lr: float = 0.1,
    lam_init: float = 0.0,
    lam_fixed: float = 0.04,
    state: R2vpoState | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``loss = -token-mean(r A) + lam (V - delta)``, ``V = token-mean((r - 1)^2)`` ([inferred]; experimental:
    a training run opts in with ``algo.experimental=true``).

    The form is inferred from the abstracts (variance of the ratio as a local trust region,
    primal-dual, "soft brake"); constants are [unverified]. ``lam`` is a constant in the primal step,
    so the per-token gradient weight on ``grad logp`` is ``r (A - 2 lam (r - 1))``: stale tokens
    (large ``|r - 1|``) are down-weighted, never dropped. ``dual="primal_dual"``: ``lam`` from
    ``state`` (``lam_init`` without one), updated by :class:`R2vpoState`; ``dual="fixed"``:
    ``lam = lam_fixed`` (the toy port's 0.04). ``variance="batch_variance"`` centres at the batch mean
    of ``r`` and needs the whole batch in one call. The penalty is added per token, so with
    ``token-mean`` the loss is exactly the formula and micro-batches accumulate to the full batch.
    """
    if variance not in VARIANCES:
        raise ValueError(f"r2vpo: variance must be one of {VARIANCES}, got {variance!r}")
    if dual not in DUALS:
        raise ValueError(f"r2vpo: dual must be one of {DUALS}, got {dual!r}")
    for name, v in (("delta", delta), ("lam_init", lam_init), ("lam_fixed", lam_fixed)):
        _check(name, v, 0.0)
    if not dual_lr > 0:
        raise ValueError(f"r2vpo: dual_lr must be > 0, got {dual_lr}")
    mask = inputs.mask
    r = log_r.exp()
    if variance == "second_moment":
        centre: torch.Tensor | float = 1.0
    else:
        if is_partial(inputs):
            raise ValueError("r2vpo: variance='batch_variance' needs the whole batch in one call "
                             "(micro-batches change the batch mean); use 'second_moment'")
        centre = masked_mean(r, mask)
    dev2 = (r - centre) ** 2
    lam = lam_fixed if dual == "fixed" else (lam_init if state is None else state.lam)
    metrics = {VAR_KEY: masked_mean(dev2.detach(), mask), "r2vpo/lambda": as_metric(lam, mask)}
    return -r * inputs.adv + lam * (dev2 - delta), metrics
