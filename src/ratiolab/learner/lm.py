"""The language-model learner: scoring, advantages and the PPO-style update over one batch.

One ``update`` makes ``epochs`` passes over the experience in ``minibatches`` optimiser steps;
each optimiser step accumulates ``micro_batches`` backward passes whose losses carry the
minibatch's global normalisers (``num_tokens``, ``num_seqs``), so the gradient does not depend
on how the minibatch is split. The objective is any registered one (``algo.objective``).
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel

from ratiolab import advantages, kl, objectives
from ratiolab.learner.config import AlgoConfig
from ratiolab.objectives.state import observes
from ratiolab.policies import token_logprobs
from ratiolab.rollout import Experience
from ratiolab.types import PolicyLossInputs


@dataclass
class Scored:
    """Experience plus the learner-side tensors of the batch (``[B, T]`` unless noted)."""

    exp: Experience
    input_ids: torch.Tensor
    attention: torch.Tensor
    start: int
    mask: torch.Tensor
    prox_logp: torch.Tensor
    ref_logp: torch.Tensor | None
    adv: torch.Tensor


class LMLearner:
    """Owns the policy, its optimiser, the frozen reference and the objective's state."""

    def __init__(
        self,
        model: PreTrainedModel,
        algo: AlgoConfig,
        temperature: float,
        ref_model: PreTrainedModel | None = None,
    ) -> None:
        self.model = model
        self.algo = algo
        self.temperature = temperature
        self.ref_model = ref_model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=algo.lr, weight_decay=algo.weight_decay)
        warmup = max(algo.warmup_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.objective_state = objectives.make_state(algo.objective, **algo.objective_params)
        self.loss_params: dict[str, Any] = dict(algo.objective_params)
        if algo.kl_placement == "loss":
            self.loss_params.update(kl_coef=algo.kl_coef, kl_kind=algo.kl_kind)
        if algo.entropy_coef:
            self.loss_params["entropy_coef"] = algo.entropy_coef
        if self.objective_state is not None:
            self.loss_params["state"] = self.objective_state
        #: objectives that take the ``[B]`` sequence rewards (GBPO) get them per micro-batch
        self.wants_scores = "scores" in objectives.OBJECTIVES.get(algo.objective).params

    # scoring -----------------------------------------------------------------------------------
    @torch.no_grad()
    def logprobs(self, model: PreTrainedModel, exp: Experience) -> torch.Tensor:
        input_ids, attention, start = exp.rollout.model_inputs()
        logp, _ = token_logprobs(model, input_ids, attention, start, self.temperature)
        return logp * exp.rollout.mask

    def score(self, exp: Experience, prox_logp: torch.Tensor | None = None) -> Scored:
        """Old logits (``prox_logp``: given by an old-logit strategy, else the current policy, which is
        exact in synchronous training), reference log-probs, and advantages."""
        input_ids, attention, start = exp.rollout.model_inputs()
        mask = exp.rollout.mask.float()
        prox = self.logprobs(self.model, exp) if prox_logp is None else prox_logp
        ref = self.logprobs(self.ref_model, exp) if self.ref_model is not None else None
        adv = self.advantages(exp, mask, prox, ref)
        return Scored(exp, input_ids, attention, start, mask, prox, ref, adv)

    def advantages(
        self, exp: Experience, mask: torch.Tensor, prox: torch.Tensor, ref: torch.Tensor | None
    ) -> torch.Tensor:
        """Advantages of ``algo.advantage`` broadcast to ``[B, T]``; KL shaping per ``algo.kl_placement``."""
        a = self.algo
        k1 = (prox - ref) * mask if ref is not None else None
        rewards = exp.rewards
        if a.kl_placement == "reward_seq" and k1 is not None:
            rewards = rewards - a.kl_coef * k1.sum(-1)
        available: dict[str, Any] = {
            "rewards": rewards,
            "scores": rewards,
            "group_ids": exp.group_ids,
            "mask": mask,
            "greedy_rewards": exp.greedy_rewards,
        }
        if a.kl_placement == "reward_token":
            available.update(kl=k1, beta=a.kl_coef)
        fn = advantages.ADVANTAGES.get(a.advantage).fn
        wanted = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in available.items() if k in wanted}
        adv = advantages.compute(a.advantage, **kwargs, **a.advantage_params)
        return (adv[:, None] if adv.dim() == 1 else adv).expand_as(mask) * mask

    # update ------------------------------------------------------------------------------------
    def update(self, s: Scored, generator: torch.Generator) -> dict[str, float]:
        """``epochs`` x ``minibatches`` optimiser steps on the scored batch; mean metrics."""
        a = self.algo
        sums: dict[str, float] = defaultdict(float)
        n_steps = 0
        self.model.train()
        for _ in range(a.epochs):
            for mb in self._group_order(s.exp, generator).chunk(a.minibatches):
                step_metrics = self._optimizer_step(s, mb)
                for k, v in step_metrics.items():
                    sums[k] += v
                n_steps += 1
        self.model.eval()
        metrics = {k: v / n_steps for k, v in sums.items()}
        if s.ref_logp is not None:
            metrics["kl_ref/k3"] = float(kl.estimate("k3", s.prox_logp, s.ref_logp).mul(s.mask).sum() / s.mask.sum())
        return metrics

    def _group_order(self, exp: Experience, generator: torch.Generator) -> torch.Tensor:
        """Rows in a random order of whole prompt groups, so that every minibatch and micro-batch
        holds complete groups (group-relative objectives need them)."""
        n = self.algo.samples_per_prompt
        groups = torch.randperm(exp.size // n, generator=generator)
        return (groups[:, None] * n + torch.arange(n)).flatten()

    def _optimizer_step(self, s: Scored, mb: torch.Tensor) -> dict[str, float]:
        """One optimiser step on minibatch ``mb``, accumulated over ``micro_batches`` with global normalisers."""
        a = self.algo
        self.optimizer.zero_grad(set_to_none=True)
        counts = (float(s.mask[mb].sum().clamp(min=1.0)), float((s.mask[mb].sum(-1) > 0).sum().clamp(min=1)))
        micros = mb.chunk(a.micro_batches)
        if observes(self.objective_state):
            assert self.objective_state is not None
            with torch.no_grad():
                for micro in micros:
                    self.objective_state.observe(self._inputs(s, micro, counts))
        metrics: dict[str, float] = defaultdict(float)
        for micro in micros:
            extra = {"scores": s.exp.rewards[micro]} if self.wants_scores else {}
            out = objectives.compute(a.objective, self._inputs(s, micro, counts), **self.loss_params, **extra)
            out.loss.backward()
            for k, v in out.metrics.items():
                metrics[k] += v / len(micros)
            metrics["loss"] += float(out.loss.detach())
        metrics["reward/mean"] = float(s.exp.rewards[mb].mean())  # stateful objectives (SAFE) read it
        metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        if self.objective_state is not None:
            self.objective_state.update(dict(metrics))
        return metrics

    def _inputs(self, s: Scored, micro: torch.Tensor, counts: tuple[float, float]) -> PolicyLossInputs:
        """The objective's inputs for rows ``micro`` (forward pass of the current policy included)."""
        ro = s.exp.rollout
        m = s.mask[micro]
        logp, entropy = token_logprobs(self.model, s.input_ids[micro], s.attention[micro], s.start, self.temperature)
        return PolicyLossInputs(
            logp=logp * m,
            prox_logp=s.prox_logp[micro],
            adv=s.adv[micro],
            mask=m,
            behav_logp=ro.behav_logp[micro].float() * m,
            ref_logp=None if s.ref_logp is None else s.ref_logp[micro],
            version=ro.version[micro],
            seq_ids=s.exp.group_ids[micro],
            turn_ids=None if ro.turn_ids is None else ro.turn_ids[micro],
            entropy=entropy * m,
            num_tokens=counts[0],
            num_seqs=counts[1],
        )

    # checkpoint --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "objective_state": None if self.objective_state is None else self.objective_state.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        saved = state.get("objective_state")
        if (saved is None) != (self.objective_state is None):
            raise ValueError(
                f"checkpoint objective state {'is missing' if saved is None else 'exists'} but objective "
                f"{self.algo.objective!r} {'needs' if saved is None else 'has'} none: resume with the same objective"
            )
        if self.objective_state is not None and saved is not None:
            self.objective_state.load_state_dict(saved)
