"""The token-level value head of value-based advantages (GAE, EGAE): PPO with a critic on the language-model
track (docs/methods/baselines.md §4-§6, docs/methods/rlhf.md §7-§8; config ``algo.value``).

Per response token ``t`` the value ``V_t = w . h_t + b`` reads the final hidden state ``h_t`` of the
position that predicts token ``t`` (the state before it): the policy's own (``shared``, the LM head's
input) or that of a separate copy of the initial trunk (``separate``). When a batch is scored:

    s      = outcome score, then (reward_scaling) s / std_run, (reward_norm) (s - mean_run) / std_run,
             (reward_clip) clip(s, +-c); a reward_seq KL is subtracted after
    r_t    = s on the last valid token (0 elsewhere); the advantage subtracts beta k1_t (reward_token)
    A      = algo.advantage(rewards=r, values=V_old, mask, ...)          (gae, egae)
    R      = A + V_old   (or the advantage with lam = target_lam, plus V_old)
    A     <- whiten_m(A), then clip(A, +-adv_clip)                        (whiten, adv_clip)

and each micro-batch adds ``value_coef * L_V`` to the policy loss, with the PPO clipped value loss

    L_V = 0.5 sum_t m_t max((V_t - R_t)^2, (V_old,t + clip(V_t - V_old,t, +-c) - R_t)^2) / N_tokens

``N_tokens`` the minibatch's value tokens (so micro-batch losses sum to the minibatch token mean; an
estimator that reads ``finished``, EGAE, trains the value on finished rows only). The head (and the
separate trunk) has its own AdamW, stepped after the policy's gradient clip. [inferred]: the zero-initialised
head, the shared trunk as default, and leaving scores unscaled while the running std is below 1e-8.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ratiolab import advantages
from ratiolab.engines.sampling import position_ids
from ratiolab.learner.critic import LastHidden, RewardNormalizer, clipped_step
from ratiolab.learner.hooks import LearnerHook, Scored, register_hook
from ratiolab.masked import last_valid, masked_mean, masked_whiten
from ratiolab.rollout import Experience

if TYPE_CHECKING:
    from ratiolab.learner.lm import LMLearner


def clipped_value_loss(
    v: torch.Tensor, old_v: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, clip: float | None,
    num_tokens: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(0.5 sum_m max((V - R)^2, (V_clip - R)^2) / num_tokens, clip fraction)`` over ``[B, T]`` tensors, with
    ``V_clip = V_old + clip(V - V_old, +-clip)`` (``clip`` ``None``: ``0.5 sum_m (V - R)^2 / num_tokens``).
    The clip fraction is the share of valid tokens where the clipped term is the larger.
    Example (docs/methods/baselines.md §5): V 0.9, V_old 0.3, R 1, c 0.2 -> 0.125."""
    plain = (v - target).square()
    if clip is None:
        return 0.5 * (plain * mask).sum() / num_tokens, torch.zeros((), dtype=v.dtype)
    v_clip = old_v + (v - old_v).clamp(-clip, clip)
    clipped = (v_clip - target).square()
    loss = 0.5 * (torch.maximum(plain, clipped) * mask).sum() / num_tokens
    return loss, masked_mean((clipped > plain).to(v.dtype).detach(), mask)


class ValueModel(nn.Module):
    """A linear value head (zero-initialised) over ``[..., H]`` hidden states, with an optional trunk of its own
    (``trunk``: the base model of a causal LM, e.g. ``LlamaModel``; ``None``: the policy's states are given)."""

    def __init__(self, hidden_size: int, trunk: nn.Module | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h.float()).squeeze(-1)

    def states(self, input_ids: torch.Tensor, attention: torch.Tensor, start: int, n_response: int) -> torch.Tensor:
        """``[B, T, H]`` final hidden states of the own trunk at the positions that predict the response tokens."""
        assert self.trunk is not None
        out = self.trunk(input_ids=input_ids, attention_mask=attention, position_ids=position_ids(attention),
                         use_cache=False)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden[:, start - 1 : start - 1 + n_response]


def shape_scores(scores: torch.Tensor, moments: RewardNormalizer | None, center: bool, clip: float) -> torch.Tensor:
    """The outcome scores after running-std scaling (``moments``, updated with ``scores`` first; ``center``:
    minus the running mean) and clipping to ``+-clip`` (0: none). Example (docs/methods/rlhf.md §8): scores
    [1, 3] from the initial moments -> mean 2, std sqrt(2) -> [0.707107, 2.121320]."""
    out = scores.double()
    if moments is not None:
        moments.update(out)
        std = moments.std()
        out = (out - moments.mean if center else out) / (std if std > 1e-8 else 1.0)
    if clip > 0:
        out = out.clamp(-clip, clip)
    return out.to(scores.dtype)


@register_hook("value_head")
class ValueHeadHook(LearnerHook):
    """The learner part ``value_head``: the value model, its optimiser and the running reward moments.

    It scores each batch (old logits, reference log-probs, ``V_old``, the advantages and value targets above;
    given advantages, e.g. of a replayed batch, are kept), records the hidden states of the loss passes, adds
    ``value_coef * L_V`` per micro-batch (metrics ``value/loss``, ``value/clip_frac``) and steps its own
    optimiser after the policy's gradient clip (``value/grad_norm``). Checkpointed under ``value_head``.
    """

    state_key = "value_head"

    def __init__(self, learner: LMLearner) -> None:
        super().__init__(learner)
        algo = learner.algo
        self.cfg = cfg = algo.value
        trunk = copy.deepcopy(learner.model.base_model) if cfg.model == "separate" else None
        self.net = ValueModel(learner.model.config.hidden_size, trunk)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=algo.lr if cfg.lr is None else cfg.lr,
                                           betas=(0.9, algo.adam_beta2), eps=algo.adam_eps)
        self.moments = RewardNormalizer(count=1e-24, ddof=0) if cfg.reward_scaling else None
        self.inputs = set(advantages.ADVANTAGES.get(algo.advantage).inputs)
        self.hidden: LastHidden | None = None
        self.num_tokens = 1.0

    def _states(self, s: Scored, rows: torch.Tensor | slice) -> torch.Tensor:
        """Hidden states ``[b, T, H]`` of rows ``rows``: the own trunk's forward, or the policy's latest one."""
        n = s.mask.shape[1]
        if self.net.trunk is not None:
            return self.net.states(s.input_ids[rows], s.attention[rows], s.start, n)
        assert self.hidden is not None and self.hidden.hidden is not None
        h = self.hidden.hidden[:, :n]
        return h.detach() if self.cfg.detach_trunk else h

    def value_mask(self, s: Scored) -> torch.Tensor:
        """Tokens the value trains on: the valid ones, of finished rows only for an estimator that reads
        ``finished`` (EGAE: a truncated row has no outcome to regress on)."""
        if "finished" in self.inputs:
            return s.mask * s.exp.rollout.finished.to(s.mask.dtype)[:, None]
        return s.mask

    def score(self, exp: Experience, prox_logp: torch.Tensor | None, adv: torch.Tensor | None) -> Scored:
        lrn = self.learner
        input_ids, attention, start = exp.rollout.model_inputs()
        mask = exp.rollout.mask.float()
        with LastHidden(lrn.model) as self.hidden:
            current = lrn.logprobs(lrn.model, exp)
        prox = current if prox_logp is None else prox_logp
        ref = lrn.logprobs(lrn.ref_model, exp) if lrn.ref_model is not None else None
        s = Scored(exp, input_ids, attention, start, mask, prox, ref, torch.zeros_like(mask))
        self.net.eval()  # as the policy scores: no dropout in V_old (a separate GPT-2 trunk has some)
        with torch.no_grad():
            old_v = self.net(self._states(s, slice(None))) * mask
        self.hidden = None
        advantage, target = self.advantages(exp, mask, prox, ref, old_v)
        s.adv = advantage if adv is None else adv
        s.old_value, s.value_target = old_v, target
        return s

    def advantages(
        self, exp: Experience, mask: torch.Tensor, prox: torch.Tensor, ref: torch.Tensor | None, old_v: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, R)`` ``[B, T]``: the estimator's advantages (whitened and clipped per ``algo.value``) and the
        value targets, from the shaped outcome scores and the scoring-time values ``old_v``."""
        lrn, a, c = self.learner, self.learner.algo, self.cfg
        scores = shape_scores(lrn.rewards(exp).to(mask.dtype), self.moments, c.reward_norm, c.reward_clip)
        k1 = (prox - ref) * mask if ref is not None else None
        if a.kl_placement == "reward_seq" and k1 is not None:
            scores = scores - lrn.kl_coef * k1.sum(-1)
        available: dict[str, Any] = {"rewards": last_valid(mask) * scores[:, None], "values": old_v, "mask": mask,
                                     "finished": exp.rollout.finished}
        if a.kl_placement == "reward_token" and k1 is not None:
            available.update(kl=k1, beta=lrn.kl_coef)
        kwargs = {k: v for k, v in available.items() if k in self.inputs}
        raw = advantages.compute(a.advantage, **kwargs, **a.advantage_params)
        if c.target_lam is None:
            target = (raw + old_v) * mask
        else:
            params = {**a.advantage_params, "lam": c.target_lam}
            target = (advantages.compute(a.advantage, **kwargs, **params) + old_v) * mask
        adv = masked_whiten(raw, mask) if c.whiten else raw * mask
        if c.adv_clip > 0:
            adv = adv.clamp(-c.adv_clip, c.adv_clip) * mask
        return adv.detach(), target.detach()

    def before_update(self, s: Scored) -> Scored:
        """The value model trains in the mode the policy trains in (``train``)."""
        self.net.train()
        return s

    def loss_pass(self) -> LastHidden:
        """Records the hidden states of the loss passes' forwards (the shared head's input)."""
        self.hidden = LastHidden(self.learner.model)
        return self.hidden

    def extra_pass(
        self, s: Scored, micros: tuple[torch.Tensor, ...], counts: tuple[float, float],
        step: dict[str, torch.Tensor | float],
    ) -> dict[str, Any]:
        """The minibatch's value-token count: the normaliser of every micro-batch's value loss."""
        self.num_tokens = float(self.value_mask(s)[torch.cat(micros)].sum().clamp(min=1.0))
        return {}

    def extra_loss(
        self, s: Scored, micro: torch.Tensor, num_seqs: float, metrics: dict[str, torch.Tensor | float]
    ) -> torch.Tensor:
        """``value_coef * L_V`` of rows ``micro`` (gradient into the head and, shared, the policy trunk)."""
        assert s.old_value is not None and s.value_target is not None
        v = self.net(self._states(s, micro))
        loss, clip_frac = clipped_value_loss(v, s.old_value[micro], s.value_target[micro], self.value_mask(s)[micro],
                                             clip=self.cfg.value_clip, num_tokens=self.num_tokens)
        value = self.cfg.value_coef * loss
        metrics["value/loss"] = loss.detach()
        metrics["value/clip_frac"] = clip_frac
        return value

    def before_step(self) -> dict[str, float]:
        """Step the value model (:func:`~ratiolab.learner.critic.clipped_step`)."""
        return clipped_step(self.net, self.optimizer, self.cfg.grad_clip)

    def after_batch(self, s: Scored, metrics: dict[str, float], n_steps: int) -> dict[str, float]:
        """``value/mean`` and ``value/target_mean`` over the valid tokens at scoring; the reward moments."""
        assert s.old_value is not None and s.value_target is not None
        out = {"value/mean": float(masked_mean(s.old_value, s.mask)),
               "value/target_mean": float(masked_mean(s.value_target, s.mask))}
        if self.moments is not None:
            out.update({"reward/running_mean": self.moments.mean, "reward/running_std": self.moments.std()})
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.moments is not None:
            state["moments"] = self.moments.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.moments is not None:
            self.moments.load_state_dict(state["moments"])
