"""GRPO-Guard (arXiv 2510.22319): ratio normalisation and gradient reweighting.

Exact form for Gaussian (reverse-SDE) steps, [secondary source] §7: :func:`gaussian_ratio_norm`
(RatioNorm, Eq. 8) and :func:`step_weight` (delta_t, Eq. 12), for flow/diffusion learners that hold
the step means. The registered objective ``grpo_guard`` is the generalisation to any grouping of
``[B, T]`` tokens (sequence, turn, timestep) that a categorical policy allows, [inferred] from the
spec's Decisions: only the log-ratio centring carries over, the Gaussian drift term does not.
"""

from __future__ import annotations

import torch

from ratiolab.masked import masked_mean
from ratiolab.objectives.checks import check_clip
from ratiolab.objectives.core import OBJECTIVES
from ratiolab.objectives.grouping import group_keys, group_mean, is_partial
from ratiolab.objectives.ppo import clip_surrogate
from ratiolab.types import PolicyLossInputs

SCHEDULES = ("flow_grpo", "dance_grpo")


def gaussian_ratio_norm(
    log_ratio: torch.Tensor,
    mu: torch.Tensor,
    mu_old: torch.Tensor,
    step_std: float,
    *,
    drift_bias_grad: bool = True,
) -> torch.Tensor:
    """``log r_hat = s (log p_theta - log p_old + b)``, ``b = mean_dims((mu - sg mu_old)^2) / (2 s^2)``.

    ``log_ratio`` is the per-dimension-mean Gaussian log-ratio of a step (shape ``[...]``), ``mu`` and
    ``mu_old`` its means ``[..., D]``, ``step_std`` = sigma_t sqrt(dt). With ``x = mu_old + s eps``
    this is ``mean(eps * (mu - mu_old))`` exactly. ``drift_bias_grad=False`` detaches ``b``.
    """
    if not step_std > 0:
        raise ValueError(f"grpo_guard: step_std must be > 0, got {step_std}")
    b = ((mu - mu_old.detach()) ** 2).mean(-1) / (2.0 * step_std**2)
    return step_std * (log_ratio + (b if drift_bias_grad else b.detach()))


def step_weight(schedule: str, t: float, dt: float, eta: float = 0.7) -> float:
    """``delta_t = 1/dt`` (Flow-GRPO) or ``(1 + eta^2 (1 - t)/(2t)) / dt`` (DanceGRPO), ``t in (0, 1]``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"grpo_guard: delta_schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not (0.0 < t <= 1.0 and dt > 0):
        raise ValueError(f"grpo_guard: need 0 < t <= 1 and dt > 0, got t={t}, dt={dt}")
    if schedule == "flow_grpo":
        return 1.0 / dt
    return (1.0 + eta**2 * (1.0 - t) / (2.0 * t)) / dt


@OBJECTIVES.register(
    "grpo_guard",
    arxiv="2510.22319",
    summary="PPO-clip on the group-centred log-ratio, gradient reweighted back to the raw scale",
)
def grpo_guard(
    inputs: PolicyLossInputs,
    log_r: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    grouping: str = "sequence",
    ratio_norm: bool = True,
    grad_reweight: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``l_t = delta_g PPOclip(r_hat_t)``, ``log r_hat = log r - sg(m_g)``, ``m_g = mean_{t in g} log r``.

    [inferred] generalisation of GRPO-Guard to token groups (``grouping``: ``sequence``, ``turn``
    via ``inputs.turn_ids``, or ``timestep`` = one column across the batch). ``ratio_norm`` removes
    each group's mean log-ratio shift so the clip band sits on the group's own centre (the analogue
    of Eq. 8's drift correction); ``grad_reweight`` multiplies by ``delta_g = sg(exp(m_g))``, which
    undoes the ``exp(-m_g)`` the centring puts on the gradient (the analogue of Eq. 12's delta_t
    undoing RatioNorm's scale). Both off is PPO; both on keeps PPO's unclipped gradient ``-A r``.
    ``timestep`` groups span rows: that grouping needs the whole batch in one call.
    """
    check_clip("grpo_guard", clip_low, clip_high)
    if grouping == "timestep" and is_partial(inputs):
        raise ValueError("grpo_guard: grouping='timestep' needs the whole batch in one call (its groups span rows)")
    mask = inputs.mask
    centre = group_mean(log_r, group_keys("grpo_guard", inputs, grouping), mask).detach()
    if not ratio_norm:
        centre = torch.zeros_like(centre)
    loss, metrics = clip_surrogate(inputs.adv, torch.exp(log_r - centre), clip_low, clip_high, mask)
    if grad_reweight:
        loss = loss * centre.exp()
    metrics["grpo_guard/centre_abs_mean"] = float(masked_mean(centre.abs(), mask))
    return loss, metrics
