"""PPO (arXiv 1707.06347) with any registry objective: ``ppo.objective`` (default ``ppo``, the clipped
surrogate) and ``ppo.objective_params``. The shared on-policy base as it is, CleanRL ``ppo.py`` defaults."""

from __future__ import annotations

from ratiolab.gym.algorithm import register
from ratiolab.gym.onpolicy import OnPolicy


@register
class PPO(OnPolicy):
    """PPO: no hook overridden; ``objective = None`` makes ``ppo.objective`` configurable."""

    name = "ppo"
