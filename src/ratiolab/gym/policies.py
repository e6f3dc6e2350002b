"""Small MLP policies: a categorical or diagonal-Gaussian actor, critics, and PQN's LayerNorm Q-network.

Distributions are handled as raw parameters (logits, or mean with a state-independent log-std)
with closed-form log-prob, entropy and KL, which keeps the per-step rollout cheap. Initialisation
follows CleanRL: orthogonal weights with gain sqrt(2), 0.01 on the actor head, 1 on value heads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

_ACT = {"tanh": nn.Tanh, "relu": nn.ReLU}


class MLP(nn.Sequential):
    """An ``nn.Sequential`` whose forward runs Linear, Tanh and ReLU layers as functional ops.

    The same weights, ``state_dict`` keys and numbers as ``nn.Sequential``, without the per-layer module
    call (no forward hooks on the layers), which is most of the cost of these tiny networks on a CPU.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, nn.Linear):
                x = F.linear(x, layer.weight, layer.bias)
            elif isinstance(layer, nn.Tanh):
                x = torch.tanh(x)
            elif isinstance(layer, nn.ReLU):
                x = torch.relu(x)
            else:
                x = layer(x)
        return x


def _linear(n_in: int, n_out: int, gain: float = math.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(
    n_in: int,
    hidden: list[int],
    n_out: int,
    activation: str = "tanh",
    head_gain: float = 1.0,
    layer_norm: bool = False,
) -> MLP:
    """``n_in -> hidden... -> n_out``; each hidden layer is Linear [-> LayerNorm] -> activation."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers.append(_linear(n_in, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(_ACT[activation]())
        n_in = h
    layers.append(_linear(n_in, n_out, head_gain))
    return MLP(*layers)


def flatten_parameters(modules: Sequence[nn.Module]) -> nn.Parameter:
    """One flat leaf holding every parameter of ``modules``, with a flat ``.grad`` buffer.

    Each module parameter (and its ``.grad``) becomes a view into the flat tensor (buffer), so
    backward accumulates straight into the buffer and gradient clipping and Adam each run as one
    op on one tensor; module code, ``state_dict`` and ``load_state_dict`` are unchanged.
    """
    params = [q for m in modules for q in m.parameters()]
    flat = nn.Parameter(torch.cat([q.detach().flatten() for q in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for q in params:
        n = q.numel()
        q.data = flat.data[offset : offset + n].view_as(q)
        q.grad = flat.grad[offset : offset + n].view_as(q)
        offset += n
    return flat


class Actor(nn.Module):
    """``pi(a|s)``: categorical over ``n_actions`` (``continuous=False``) or a diagonal Gaussian.

    The Gaussian's state-independent log-std is learned (initialised at 0) unless ``fixed_std`` is
    given: then it is a constant buffer ``log(fixed_std)`` (saved with the weights, never trained).
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        continuous: bool,
        hidden: list[int],
        activation: str,
        fixed_std: float | None = None,
    ) -> None:
        super().__init__()
        self.continuous = continuous
        self.net = mlp(obs_dim, hidden, n_actions, activation, head_gain=0.01)
        self.log_std: torch.Tensor | None
        if continuous and fixed_std is not None:
            self.register_buffer("log_std", torch.full((n_actions,), math.log(fixed_std)))
        else:
            self.log_std = nn.Parameter(torch.zeros(n_actions)) if continuous else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Distribution parameters ``[B, P]``: logits, or ``cat(mean, log_std)`` for a Gaussian."""
        out: torch.Tensor = self.net(obs)
        if self.log_std is None:
            return out
        return torch.cat([out, self.log_std.expand_as(out)], dim=-1)

    def log_prob(self, params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if not self.continuous:
            return params.log_softmax(-1).gather(-1, action.long()[:, None])[:, 0]
        mean, log_std = params.chunk(2, dim=-1)
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        if not self.continuous:
            logp = params.log_softmax(-1)
            return -(logp.exp() * logp).sum(-1)
        _, log_std = params.chunk(2, dim=-1)
        return (log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)

    def log_prob_entropy(
        self, params: torch.Tensor, action: torch.Tensor, entropy_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`log_prob` and :meth:`entropy` from one log-softmax (the entropy detached unless ``entropy_grad``)."""
        if not self.continuous:
            lsm = params.log_softmax(-1)
            ls = lsm if entropy_grad else lsm.detach()
            return lsm.gather(-1, action.long()[:, None])[:, 0], -(ls.exp() * ls).sum(-1)
        return self.log_prob(params, action), self.entropy(params if entropy_grad else params.detach())

    def kl(self, params: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """Closed-form ``KL(pi_params || pi_old)`` per state."""
        if not self.continuous:
            lp, lq = params.log_softmax(-1), old.log_softmax(-1)
            return (lp.exp() * (lp - lq)).sum(-1)
        m1, s1 = params.chunk(2, dim=-1)
        m0, s0 = old.chunk(2, dim=-1)
        return (s0 - s1 + (torch.exp(2 * s1) + (m1 - m0).square()) / (2 * torch.exp(2 * s0)) - 0.5).sum(-1)

    def sample(self, params: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """An action per row and its log-prob (the mode when ``deterministic``).

        Categorical draws use the Gumbel-max trick, ``argmax(logits - log E)`` with ``E ~ Exp(1)``
        (the distribution of ``torch.multinomial`` at a third of its CPU time on small batches).
        """
        if not self.continuous:
            noise = 0.0 if deterministic else torch.empty_like(params).exponential_().log()
            action = (params - noise).argmax(-1)
        else:
            mean, log_std = params.chunk(2, dim=-1)
            action = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return action, self.log_prob(params, action)


class QNetwork(nn.Module):
    """PQN's Q-network (arXiv 2407.04811): Dense -> LayerNorm -> ReLU per hidden layer, a linear head."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, n_actions, "relu", head_gain=1.0, layer_norm=True)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(obs)
        return out
