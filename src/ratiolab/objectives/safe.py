"""SAFE (ryyzn9/SAFE ``notebooks/mainD.py``, no paper): PPO with an entropy-gated KL penalty whose
threshold a PID controller and a training-phase detector move ([verified: code], docs/methods/ratio-objectives.md §12).

``safe`` reproduces the script: the penalty is computed from detached values (the script's ``.item()``),
so it shifts the loss value and carries **no gradient**. ``safe_fixed`` makes it differentiable (the live KL of the call
instead of ``kl_short``). The controller lives in :class:`SafeState`; ``update`` reads the step's
``safe/kl`` (from ``compute``) and the mean reward under :data:`REWARD_KEY` (supplied by the learner).

The double soft-min critic (its advantages and value loss) lives with the learner,
:mod:`ratiolab.learner.critic`, which uses :func:`soft_min_value`. Not reproduced: the script's
unmasked entropy bonus (use the common, masked ``entropy_coef=0.01``); the unused Polyak target critic.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch

from ratiolab import correction
from ratiolab.masked import as_metric, masked_mean
from ratiolab.objectives.checks import check_clip
from ratiolab.objectives.core import OBJECTIVES
from ratiolab.objectives.ppo import clip_surrogate
from ratiolab.objectives.state import ObjectiveState
from ratiolab.types import PolicyLossInputs

REWARD_KEY = "reward/mean"
KL_KEY = "safe/kl"
#: (name, threshold multiplier) of each training phase.
PHASES = {"warmup": 1.5, "climbing": 1.2, "converged": 1.0, "plateau": 0.8}


def soft_min_value(v1: torch.Tensor, v2: torch.Tensor, alpha: float = 0.3) -> torch.Tensor:
    """``V = -alpha (logsumexp(-v1/alpha, -v2/alpha) - log 2)``: between ``min(v1, v2)`` and their mean."""
    if not alpha > 0:
        raise ValueError(f"safe: alpha must be > 0, got {alpha}")
    stacked = torch.stack([-v1 / alpha, -v2 / alpha])
    return -alpha * (torch.logsumexp(stacked, 0) - math.log(2.0))


@dataclass
class SafeState(ObjectiveState):
    """KL EWMAs, the reward PID controller and the phase detector (one ``update`` per optimiser step).

    PID: ``ema <- d ema + (1 - d) reward``; ``e = (ema - ema_prev) - setpoint``;
    ``out = kp e + ki clip(sum e, +-1) + kd (e - e_prev)``; the first call returns 0 (``ema`` starts at
    the first reward, [inferred]). Phase from the reward history: warmup (< 50 steps), climbing (mean
    of the last 50 > previous 50 + 0.01), converged (std < 0.02 and mean > 0.7), else plateau.
    ``threshold = clip((base + out) * phase multiplier, lo, hi)`` is used by the next step.
    """

    METHOD = "safe"
    kl_short: float = 0.0
    kl_long: float = 0.0
    ema: float = 0.0
    integral: float = 0.0
    prev_error: float = 0.0
    pid_calls: int = 0
    pid_out: float = 0.0
    rewards: list[float] = field(default_factory=list)
    threshold: float = 0.45
    gains: tuple[float, float, float] = (0.3, 0.01, 0.05)
    decays: tuple[float, float, float] = (0.9, 0.99, 0.95)
    base: float = 0.3
    bounds: tuple[float, float] = (0.1, 0.6)
    setpoint: float = 0.001

    def __post_init__(self) -> None:
        for name, g in zip(("kp", "ki", "kd"), self.gains, strict=True):
            if not (math.isfinite(g) and g >= 0):
                raise ValueError(f"safe: PID gain {name} must be finite and >= 0 (a negative gain turns the "
                                 f"feedback positive and the controller unstable), got {g}")
        for name, d in zip(("kl_short_decay", "kl_long_decay", "reward_decay"), self.decays, strict=True):
            if not 0.0 < d < 1.0:
                raise ValueError(f"safe: {name} must be in (0, 1), got {d}")
        if not 0.0 < self.bounds[0] < self.bounds[1]:
            raise ValueError(f"safe: threshold bounds need 0 < low < high, got {self.bounds}")
        self.threshold = self._threshold()

    def kl_short_after(self, kl: float | torch.Tensor) -> float | torch.Tensor:
        """``kl_short`` once this step's KL (a float, or a tensor for an on-device result) is folded in."""
        return self.decays[0] * self.kl_short + (1.0 - self.decays[0]) * kl

    def phase(self) -> str:
        h = self.rewards
        if len(h) < 50:
            return "warmup"
        last, prev = h[-50:], h[-100:-50]
        if prev and statistics.fmean(last) > statistics.fmean(prev) + 0.01:
            return "climbing"
        if statistics.pstdev(last) < 0.02 and statistics.fmean(last) > 0.7:
            return "converged"
        return "plateau"

    def _pid(self, reward: float) -> float:
        if self.pid_calls == 0:
            self.ema, self.pid_calls = reward, 1
            return 0.0
        prev = self.ema
        self.ema = self.decays[2] * self.ema + (1.0 - self.decays[2]) * reward
        self.pid_calls += 1
        e = (self.ema - prev) - self.setpoint
        self.integral += e
        de, self.prev_error = e - self.prev_error, e
        kp, ki, kd = self.gains
        return kp * e + ki * min(max(self.integral, -1.0), 1.0) + kd * de

    def _threshold(self) -> float:
        raw = (self.base + self.pid_out) * PHASES[self.phase()]
        return min(max(raw, self.bounds[0]), self.bounds[1])

    def update(self, metrics: dict[str, float]) -> None:
        for key in (KL_KEY, REWARD_KEY):
            if key not in metrics:
                raise ValueError(f"safe: state.update needs metrics[{key!r}] (the learner adds {REWARD_KEY!r})")
        kl = metrics[KL_KEY]
        self.kl_short = float(self.kl_short_after(kl))
        self.kl_long = self.decays[1] * self.kl_long + (1.0 - self.decays[1]) * kl
        self.pid_out = self._pid(metrics[REWARD_KEY])
        self.rewards = [*self.rewards, metrics[REWARD_KEY]][-100:]
        self.threshold = self._threshold()


@dataclass
class SafeFixedState(SafeState):
    METHOD = "safe_fixed"


def _state_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    keys = {"gains": ("kp", "ki", "kd"), "decays": ("kl_short_decay", "kl_long_decay", "reward_decay"),
            "bounds": ("threshold_low", "threshold_high")}
    defaults = {"kp": 0.3, "ki": 0.01, "kd": 0.05, "kl_short_decay": 0.9, "kl_long_decay": 0.99, "reward_decay": 0.95,
                "threshold_low": 0.1, "threshold_high": 0.6}
    out: dict[str, Any] = {k: tuple(params.get(n, defaults[n]) for n in names) for k, names in keys.items()}
    return out | {"base": params.get("threshold_base", 0.3)}


def make_safe_state(**params: Any) -> SafeState:
    """Controller settings from the keyword arguments ``kp, ki, kd, kl_short_decay, kl_long_decay, reward_decay``."""
    return SafeState(**_state_kwargs(params))


def make_safe_fixed_state(**params: Any) -> SafeFixedState:
    return SafeFixedState(**_state_kwargs(params))


@OBJECTIVES.register("safe", arxiv="", summary="PPO + entropy-gated KL penalty on a PID-controlled threshold",
                     requires=("ref_logp",), parts=("critic",), state=make_safe_state)
def safe(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    clip: float = 0.2,
    penalty_coef: float = 0.1,
    differentiable: bool = False,
    threshold_base: float = 0.3,
    threshold_low: float = 0.1,
    threshold_high: float = 0.6,
    state: SafeState | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``l_t = PPOclip(r_t; 0.2) + P``, ``P = c (kl_s - thr)^2 max(0.5, 2/(H + 0.1))`` if ``kl_s > thr`` else 0.

    ``kl = token-mean(logp - ref_logp)`` (``ref_logp`` is required: ``compute`` raises without it);
    ``kl_s = 0.9 kl_short + 0.1 kl`` and ``thr`` from ``state`` (without one: a fresh state, threshold
    ``clip(1.5 threshold_base, threshold_low, threshold_high)`` = 0.45; these three are the script's
    constants and configure the state the learner builds). ``differentiable=False`` (``safe``): ``P`` is a
    constant, as in the script; ``True`` (``safe_fixed``): ``kl_s`` is the live ``kl`` with gradient (of the
    call's batch: run whole mini-batches). ``H`` = masked mean of ``inputs.entropy`` (without it H = 0, the
    strongest gate, and ``safe/entropy_given`` = 0). ``P`` is added per token
    and divided by ``w_disc`` so that ``compute``'s behaviour weight applies only to the PPO term.
    """
    check_clip("safe", clip, clip)
    if penalty_coef < 0:
        raise ValueError(f"safe: penalty_coef must be >= 0, got {penalty_coef}")
    st = state if state is not None else SafeState(base=threshold_base, bounds=(threshold_low, threshold_high))
    mask = inputs.mask
    loss, metrics = clip_surrogate(inputs.adv, log_r.exp(), clip, clip, mask)
    assert inputs.ref_logp is not None  # the registry entry requires it
    kl = masked_mean(inputs.logp - inputs.ref_logp, mask)
    kl_s = kl if differentiable else st.kl_short_after(kl.detach())
    assert isinstance(kl_s, torch.Tensor)
    metrics.update({KL_KEY: kl.detach(), "safe/threshold": as_metric(st.threshold, mask),
                    "safe/entropy_given": as_metric(inputs.entropy is not None, mask), "safe/kl_short": kl_s.detach()})
    if penalty_coef == 0:
        metrics["safe/penalty"] = as_metric(0.0, mask)
        return loss, metrics
    ent = 0.0 if inputs.entropy is None else masked_mean(inputs.entropy.detach(), mask)
    gate = torch.clamp(2.0 / (ent + kl.new_full((), 0.1)), min=0.5)
    # (kl_s - thr)^2 where kl_s > thr, else 0: the gate is taken on the device, not with a host branch
    penalty = penalty_coef * (kl_s - st.threshold).clamp(min=0.0) ** 2 * gate
    metrics["safe/penalty"] = penalty.detach()
    w, _ = correction.decompose(inputs)
    return loss + penalty / w, metrics


OBJECTIVES.add(
    "safe_fixed",
    safe,
    arxiv="",
    summary="SAFE with a differentiable KL penalty (live KL instead of the EWMA)",
    parts=("critic",),
    state=make_safe_fixed_state,
    fixed={"differentiable": True},
    requires=("ref_logp",),
)
