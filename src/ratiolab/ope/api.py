"""Public entry point ``estimate(name, *, reward, action, pscore, action_dist, ...)`` (OBP argument names).

Bandit estimators take ``reward``/``action``/``pscore`` of shape (n,) and ``action_dist`` (n, K) or
(n, K, len_list); trajectory estimators take [N, T] arrays and ``action_dist`` [N, T, K] (plus the
``gamma`` and ``mask`` parameters). Every estimator also accepts ``alpha``, ``n_bootstrap`` and ``seed``
for its percentile-bootstrap interval over the per-round (per-trajectory) values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ratiolab.ope.bandit import BANDIT_ESTIMATORS
from ratiolab.ope.bootstrap import bootstrap_ci
from ratiolab.ope.inputs import BanditInputs
from ratiolab.ope.trajectory import TRAJECTORY_ESTIMATORS, TrajectoryInputs
from ratiolab.ope.validation import FloatArray

_CI_PARAMS = ("alpha", "n_bootstrap", "seed")


@dataclass(frozen=True)
class Estimate:
    """Point estimate (mean of per-round values) and its (1 − α) bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float


def available() -> list[str]:
    """Names of all estimators (bandit and trajectory)."""
    return sorted(BANDIT_ESTIMATORS.names() + TRAJECTORY_ESTIMATORS.names())


def per_round_values(
    name: str,
    *,
    reward: Any,
    action: Any,
    pscore: Any,
    action_dist: Any,
    estimated_rewards: Any = None,
    position: Any = None,
    **params: Any,
) -> tuple[FloatArray, dict[str, Any]]:
    """Per-round (per-trajectory) values of estimator ``name`` and its resolved parameters."""
    if name in BANDIT_ESTIMATORS:
        resolved = BANDIT_ESTIMATORS.resolve(name, params)
        inputs: Any = BanditInputs.from_arrays(
            reward=reward,
            action=action,
            pscore=pscore,
            action_dist=action_dist,
            estimated_rewards=estimated_rewards,
            position=position,
        )
        fn = BANDIT_ESTIMATORS.get(name).fn
        own = {k: v for k, v in resolved.items() if k not in _CI_PARAMS}
    elif name in TRAJECTORY_ESTIMATORS:
        resolved = TRAJECTORY_ESTIMATORS.resolve(name, params)
        if position is not None:
            raise ValueError(f"position: trajectory estimator {name!r} takes no position; leave it None")
        inputs = TrajectoryInputs.from_arrays(
            reward=reward,
            action=action,
            pscore=pscore,
            action_dist=action_dist,
            estimated_rewards=estimated_rewards,
            mask=resolved["mask"],
            gamma=resolved["gamma"],
        )
        fn = TRAJECTORY_ESTIMATORS.get(name).fn
        own = {k: v for k, v in resolved.items() if k not in (*_CI_PARAMS, "gamma", "mask")}
    else:
        raise ValueError(f"unknown estimator {name!r}; valid names: {', '.join(available())}")
    return fn(inputs, **own), resolved


def estimate(
    name: str,
    *,
    reward: Any,
    action: Any,
    pscore: Any,
    action_dist: Any,
    estimated_rewards: Any = None,
    position: Any = None,
    **params: Any,
) -> Estimate:
    """Estimate the value of the policy ``action_dist`` from logged data with estimator ``name``.

    Unknown names or parameters raise ``ValueError`` listing the valid ones (see :func:`available`).
    ``n_bootstrap=0`` skips the interval (ci_low = ci_high = nan).
    """
    values, resolved = per_round_values(
        name,
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        estimated_rewards=estimated_rewards,
        position=position,
        **params,
    )
    low, high = bootstrap_ci(
        values, alpha=resolved["alpha"], n_bootstrap=resolved["n_bootstrap"], seed=resolved["seed"]
    )
    return Estimate(float(values.mean()), low, high)
