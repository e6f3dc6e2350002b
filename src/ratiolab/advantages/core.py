"""The advantage-estimator registry and ``compute``."""

from __future__ import annotations

from typing import Any

import torch

from ratiolab.registry import Registry

#: An estimator registered with ``reward_components=True`` takes ``[B, K]`` reward components (a task's
#: ``reward_components``) as ``rewards``; the learner passes them instead of the scalar reward.
ADVANTAGES = Registry("advantage estimator")


def compute(name: str, **tensors_and_params: Any) -> torch.Tensor:
    """Advantages of estimator ``name``; tensors and parameters are passed by keyword.

    Example: ``compute("gae", rewards=R, values=V, mask=M, gamma=0.99, lam=0.95)`` with
    ``[B, T]`` tensors, or ``compute("grpo", rewards=r, group_ids=g)`` with ``[B]`` tensors.
    """
    p = ADVANTAGES.resolve(name, tensors_and_params)
    out: torch.Tensor = ADVANTAGES.get(name).fn(**p)
    return out


def require_shape(method: str, name: str, t: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> None:
    if t.shape != shape:
        raise ValueError(f"{method}: {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
