"""PRDC's dataset constraint (arXiv 2306.06569): the nearest dataset action to a query ``(beta * s, a)``.

The keys ``[beta * s_i, a_i]`` of the whole dataset go once into a KD-tree (``scipy.spatial.cKDTree``,
exact Euclidean nearest neighbour, as sklearn's ``NearestNeighbors`` in the reference code); a batch of
states and policy actions is queried as ``[beta * s, pi(s)]`` and the neighbour's dataset action is
returned, without gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree


class DatasetConstraint:
    """Nearest-neighbour index over ``[beta * states, actions]`` (``[N, obs_dim]``, ``[N, act_dim]``)."""

    def __init__(self, states: np.ndarray, actions: np.ndarray, beta: float) -> None:
        if states.shape[0] != actions.shape[0]:
            raise ValueError(f"states has {states.shape[0]} rows but actions {actions.shape[0]}; pass aligned arrays")
        self.beta = beta
        self.actions = torch.as_tensor(actions, dtype=torch.float32)
        self.tree = cKDTree(np.concatenate([beta * states, actions], axis=1).astype(np.float64))

    def nearest(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The dataset action of each query's nearest key, and the squared key distance."""
        keys = torch.cat([self.beta * states, actions], dim=-1).detach().double().numpy()
        dist, idx = self.tree.query(keys, k=1)
        return self.actions[torch.as_tensor(idx)], torch.as_tensor(dist, dtype=torch.float32).square()
