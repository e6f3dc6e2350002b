"""SAFE's double soft-min critic (ryyzn9/SAFE ``notebooks/mainD.py``; docs/methods/ratio-objectives.md §12,
[verified: code]).

Two value heads on ``LayerNorm(h)``, ``h`` the final hidden state (the input of the LM head) of a
sequence's last real token, each ``Linear(H, H/4) -> GELU -> Linear(H/4, 1)``:

    V      = softmin_alpha(v1, v2) = -alpha (logsumexp(-v1/alpha, -v2/alpha) - log 2)      alpha = 0.3
    R      = (reward - running mean) / (running std + 1e-8)       (running moments updated with the batch first)
    A      = standardise_batch(R - sg(V_old))                      one scalar per sequence, broadcast to tokens
    L_V    = 0.5 [Huber_0.5(V, R) + Huber_0.5(V_old + clip(V - V_old, +-0.2), R)]      mean over sequences

``V_old`` is the critic's value when the batch is scored. The learner adds ``0.5 L_V`` to the policy
loss, so the value gradient also reaches the policy trunk (as in the script); the critic has its own
AdamW and grad-norm clip 0.5. [inferred]: the script reads the hidden state at the last position of
the padded batch (padding for shorter responses); here it is the last real token of each row.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ratiolab.learner.hooks import LearnerHook, Scored, register_hook
from ratiolab.objectives.safe import soft_min_value
from ratiolab.rollout import Experience

if TYPE_CHECKING:
    from ratiolab.learner.lm import LMLearner


def clipped_step(net: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float) -> dict[str, float]:
    """Clip ``net``'s gradient norm to ``grad_clip``, step ``optimizer``, zero the gradients; returns
    ``value/grad_norm``, the pre-clip norm (a value model's own step, beside the policy's)."""
    norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"value/grad_norm": norm}


class RewardNormalizer:
    """Running reward mean/variance (Chan's parallel merge of batch moments from mean 0, var 1 and ``count``; the
    batch variance with ``ddof``). SAFE: count 1e-4, unbiased batch variance; MOSS-RLHF's ``RunningMoments``:
    count 1e-24, biased batch variance, and :meth:`std` with the N / (N - 1) correction."""

    def __init__(self, count: float = 1e-4, ddof: int = 1) -> None:
        self.count, self.mean, self.var, self.ddof = count, 0.0, 1.0, ddof

    def update(self, x: torch.Tensor) -> None:
        n = x.numel()
        b_mean = float(x.mean())
        b_var = float(x.var(correction=self.ddof)) if n > 1 else 0.0
        delta, total = b_mean - self.mean, self.count + n
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (math.sqrt(self.var) + 1e-8)

    def std(self) -> float:
        """The running std with the N / (N - 1) correction (MOSS-RLHF's reported std; 0 before two samples)."""
        return math.sqrt(self.var * self.count / (self.count - 1.0)) if self.count > 1.0 else 0.0

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.var = state["count"], state["mean"], state["var"]


class DoubleCritic(nn.Module):
    """``V(h) = softmin_alpha(v1(LN(h)), v2(LN(h)))`` over ``[B, H]`` features."""

    def __init__(self, hidden_size: int, alpha: float = 0.3) -> None:
        super().__init__()
        self.alpha = alpha
        self.norm = nn.LayerNorm(hidden_size)
        width = max(hidden_size // 4, 1)
        self.v1 = nn.Sequential(nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, 1))
        self.v2 = nn.Sequential(nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.norm(h.float())
        return soft_min_value(self.v1(z).squeeze(-1), self.v2(z).squeeze(-1), self.alpha)


def value_loss(
    v: torch.Tensor, old_v: torch.Tensor, target: torch.Tensor, *, delta: float = 0.5, clip: float = 0.2,
    num_seqs: float | None = None,
) -> torch.Tensor:
    """``0.5 [Huber_delta(V, R) + Huber_delta(V_clip, R)]`` summed over rows and divided by ``num_seqs``
    (the mini-batch's sequence count, so that micro-batch losses sum to the mini-batch mean)."""
    v_clip = old_v + (v - old_v).clamp(-clip, clip)
    n = float(v.numel()) if num_seqs is None else num_seqs
    huber = nn.functional.huber_loss
    total = huber(v, target, reduction="sum", delta=delta) + huber(v_clip, target, reduction="sum", delta=delta)
    return 0.5 * total / n


def critic_advantages(norm_rewards: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``A = (d - mean d) / (std d + 1e-8)`` with ``d = R - sg(V)`` (unbiased std, as ``Tensor.std``)."""
    d = norm_rewards - values.detach()
    std = d.std() if d.numel() > 1 else d.new_zeros(())
    return (d - d.mean()) / (std + 1e-8)


class LastHidden:
    """Context manager: records the LM head's input (the final hidden states) of every forward of ``model``.

    ``take(lengths, n_response)`` picks each row's last real token from the latest forward, which scored
    a ``[B, P + T]`` batch with ``logits_to_keep = T + 1`` (positions ``P - 1 .. P + T - 1``).
    """

    def __init__(self, model: PreTrainedModel) -> None:
        head = model.get_output_embeddings()
        if not isinstance(head, nn.Module):
            raise ValueError("the SAFE critic needs a model with an output embedding (LM head) module")
        self.head = head
        self.hidden: torch.Tensor | None = None
        self._handle: Any = None

    def _record(self, _: nn.Module, args: tuple[Any, ...]) -> None:
        self.hidden = args[0]

    def __enter__(self) -> LastHidden:
        self._handle = self.head.register_forward_pre_hook(self._record)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._handle.remove()

    def take(self, lengths: torch.Tensor, n_response: int) -> torch.Tensor:
        if self.hidden is None or self.hidden.shape[1] != n_response + 1:
            raise RuntimeError("LastHidden: no forward with logits_to_keep = T + 1 was recorded")
        rows = torch.arange(self.hidden.shape[0])
        return self.hidden[rows, lengths.long().clamp(0, n_response)]


@register_hook("critic")
class CriticHook(LearnerHook):
    """The learner part ``critic``: the critic heads, their optimiser and the reward normaliser of one learner.

    It scores each batch (the advantages above, unless given, e.g. for a replayed batch; ``algo.advantage``
    is not used), adds ``value_coef * L_V`` of each micro-batch to the policy loss (metric ``value/loss``),
    and steps its own optimiser after the policy's gradient clip (``value/grad_norm``).
    """

    state_key = "critic"

    def __init__(self, learner: LMLearner) -> None:
        super().__init__(learner)
        self.cfg = cfg = learner.algo.critic
        self.net = DoubleCritic(learner.model.config.hidden_size, cfg.alpha)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=learner.algo.lr if cfg.lr is None else cfg.lr)
        self.rewards = RewardNormalizer()
        self.hidden: LastHidden | None = None

    @torch.no_grad()
    def values(self, rewards: torch.Tensor, h_last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, R, V_old)`` per sequence; updates the running reward moments with ``rewards`` first."""
        self.rewards.update(rewards)
        target = self.rewards.normalize(rewards.float())
        old_v = self.net(h_last)
        return critic_advantages(target, old_v), target, old_v

    def score(self, exp: Experience, prox_logp: torch.Tensor | None, adv: torch.Tensor | None) -> Scored:
        """Old logits (the current policy's unless given), reference log-probs and the critic's advantages."""
        lrn = self.learner
        input_ids, attention, start = exp.rollout.model_inputs()
        mask = exp.rollout.mask.float()
        with LastHidden(lrn.model) as hidden:
            current = lrn.logprobs(lrn.model, exp)
        prox = current if prox_logp is None else prox_logp
        a, target, old_v = self.values(lrn.rewards(exp), hidden.take(exp.rollout.lengths, mask.shape[1]))
        ref = lrn.logprobs(lrn.ref_model, exp) if lrn.ref_model is not None else None
        adv = a[:, None].expand_as(mask) * mask if adv is None else adv
        return Scored(exp, input_ids, attention, start, mask, prox, ref, adv, value_target=target, old_value=old_v)

    def loss_pass(self) -> LastHidden:
        """Records the hidden states of the loss passes' forwards (the value heads' input)."""
        self.hidden = LastHidden(self.learner.model)
        return self.hidden

    def loss(self, h_last: torch.Tensor, old_v: torch.Tensor, target: torch.Tensor, num_seqs: float) -> torch.Tensor:
        """``value_coef * L_V`` of some rows of the mini-batch (gradient into the critic and ``h_last``)."""
        v = self.net(h_last)
        c = self.cfg
        return c.value_coef * value_loss(v, old_v, target, delta=c.huber_delta, clip=c.value_clip, num_seqs=num_seqs)

    def extra_loss(
        self, s: Scored, micro: torch.Tensor, num_seqs: float, metrics: dict[str, torch.Tensor | float]
    ) -> torch.Tensor:
        """``value_coef * L_V`` of rows ``micro`` from the hidden states of the forward just made."""
        assert self.hidden is not None and s.value_target is not None and s.old_value is not None
        h_last = self.hidden.take(s.exp.rollout.lengths[micro], s.mask.shape[1])
        value = self.loss(h_last, s.old_value[micro], s.value_target[micro], num_seqs)
        metrics["value/loss"] = value.detach()
        return value

    def before_step(self) -> dict[str, float]:
        """Step the critic (:func:`clipped_step`)."""
        return clipped_step(self.net, self.optimizer, self.cfg.grad_clip)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rewards": self.rewards.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rewards.load_state_dict(state["rewards"])
