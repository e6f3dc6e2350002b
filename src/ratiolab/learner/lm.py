"""The language-model learner: scoring, advantages and the PPO-style update over one batch.

One ``update`` makes ``epochs`` passes over the experience in ``minibatches`` optimiser steps;
each optimiser step accumulates ``micro_batches`` backward passes whose losses carry the
minibatch's global normalisers (``num_tokens``, ``num_seqs``), so the gradient does not depend
on how the minibatch is split. The objective is any registered one (``algo.objective``). Two more parts keep
that exact: with ``objective_params.mask_denominator = kept`` the normalisers count the minibatch's tokens
(sequences) that the correction keeps; an objective whose entry declares
``batch_params(inputs, log_r, params) -> dict`` (M2PO's cutoff, arXiv 2510.01161) gets those
parameters computed once per optimiser step over the whole minibatch, under no grad, in every micro-batch.

The KL coefficient of ``algo.kl_placement`` comes from a controller (``algo.kl_controller``: fixed, or
adaptive after Ziegler et al., arXiv 1909.08593), stepped once per batch and checkpointed. Advantage
estimators get what their signature asks for: ``prox_logp`` and ``sum_pi_sq`` (``sum_v pi(v)^2``, scored
only when asked; optimal_token_baseline) and, for estimators whose entry declares ``reward_components``
(GDPO), the task's ``[B, K]`` ``Experience.reward_components``.

The learner parts an objective's entry lists (``Entry.parts``) run as learner hooks
(:mod:`ratiolab.learner.hooks`), called at fixed points of scoring and the update and checkpointed under
their own keys; inactive (and free) for every other objective. The registered parts:
``clip_bias_norm`` (S-PPO/ST-PPO's first gradient pass, :mod:`ratiolab.learner.clip_bias`), ``replay``
(ReMix's window, UTD, pi_{k-1} and reincarnation, :mod:`ratiolab.learner.replay`), ``critic`` (SAFE's
double soft-min critic, :mod:`ratiolab.learner.critic`) and ``expert_sft`` (CHORD's SFT term on the
problems' demonstrations, :mod:`ratiolab.learner.expert`). An advantage estimator's entry may list parts too:
``value_head`` (GAE/EGAE's token-level value head, :mod:`ratiolab.learner.value_head`).
"""

from __future__ import annotations

import contextlib
import copy
from collections import defaultdict
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import torch
from transformers import PreTrainedModel

from ratiolab import advantages, correction, kl, objectives
from ratiolab.config.train import AlgoConfig
from ratiolab.engines.sampling import SamplingParams
from ratiolab.learner import clip_bias, critic, expert, replay, value_head  # noqa: F401  (each registers its learner hook)
from ratiolab.learner.hooks import LearnerHook, Scored, hook_types, state_keys
from ratiolab.objectives.kl_control import AdaptiveKLController, FixedKLController, make_kl_controller
from ratiolab.objectives.state import observes
from ratiolab.policies import token_logprobs
from ratiolab.policies.scoring import TokenScores
from ratiolab.reward_model.scorer import RewardScorer, gold_metrics
from ratiolab.rollout import Experience
from ratiolab.types import PolicyLossInputs

__all__ = ["LMLearner", "Scored", "make_optimizer", "overlong_penalty", "vocab_kl"]

H = TypeVar("H", bound=LearnerHook)


class LMLearner:
    """Owns the policy, its optimiser, the frozen reference and the objective's state."""

    def __init__(
        self,
        model: PreTrainedModel,
        algo: AlgoConfig,
        temperature: float,
        ref_model: PreTrainedModel | None = None,
        max_response_length: int | None = None,
        total_iterations: int | None = None,
        support: SamplingParams | None = None,
        reward_model: RewardScorer | None = None,
    ) -> None:
        self.model = model
        #: reward models that replace the verifier's rewards of each fresh batch (``reward.models``)
        self.reward_model = reward_model
        self.algo = algo
        self.temperature = temperature
        #: ``sampling.logprob_support = kept``: the engine's truncation, applied to every learner forward
        self.support = support
        #: sampled tokens outside the learner's kept support, and tokens scored, since the last update
        self.support_counts = [0.0, 0.0]
        self.ref_model = ref_model
        #: the configured maximum response length: Dr.GRPO's constant divisor, DAPO's L_max
        self.max_response_length = max_response_length
        if algo.overlong_buffer and max_response_length is None:
            raise ValueError("algo.overlong_buffer needs max_response_length (DAPO's L_max) for the learner")
        self.optimizer, self.scheduler = make_optimizer(model, algo)
        entry = objectives.OBJECTIVES.get(algo.objective)
        advantage = advantages.ADVANTAGES.get(algo.advantage)
        # the objective's parts, then the advantage's (a value-based estimator brings its value head)
        parts = hook_types(algo.objective, tuple(dict.fromkeys(entry.parts + advantage.parts)))
        state_params = dict(algo.objective_params)
        for part in parts:  # a part's own config section may configure the state (ReMix's schedule)
            state_params.update(part.state_params(algo))
        self.objective_state = objectives.make_state(algo.objective, **state_params)
        self.loss_params: dict[str, Any] = dict(algo.objective_params)
        #: the KL coefficient (``value``) of the loss or reward placement; adaptive: advanced once per batch
        self.kl_ctl: FixedKLController | AdaptiveKLController | None = None
        if algo.kl_placement != "none":
            ctl = {"target": algo.kl_target, "horizon": algo.kl_horizon} if algo.kl_controller == "adaptive" else {}
            self.kl_ctl = make_kl_controller(algo.kl_controller, value=algo.kl_coef, **ctl)
        if algo.kl_placement == "loss":
            self.loss_params.update(kl_coef=algo.kl_coef, kl_kind=algo.kl_kind)
        if algo.entropy_coef:
            self.loss_params["entropy_coef"] = algo.entropy_coef
        if self.objective_state is not None:
            self.loss_params["state"] = self.objective_state
        #: objectives that declare the ``[B]`` sequence rewards as an input (GBPO) get them per micro-batch
        self.wants_scores = "scores" in entry.inputs
        resolved = objectives.OBJECTIVES.resolve(algo.objective, algo.objective_params)
        if (resolved["aggregation"] == "seq-mean-token-sum-norm" and resolved["sum_norm_constant"] is None
                and max_response_length is not None):  # a constant divisor, not the batch's padded length
            self.loss_params["sum_norm_constant"] = float(max_response_length)
        self.resolved = resolved
        #: the entry's ``batch_params``: parameters shared by a batch's micro-batches (M2PO's cutoff)
        self.batch_hook: Callable[..., dict[str, Any]] | None = entry.batch_params
        #: ``mask_denominator = kept``: the normalisers count the tokens the correction keeps
        self.kept_denominator = resolved["mask_denominator"] == "kept"
        #: MDPO: the schedule t_k = 1 - (k - 1) / K advances once per batch (``iteration`` k = updates so far,
        #: ``total_iterations`` K = the run's steps unless set); the analytic full-vocabulary KL(pi_theta || pi_k)
        #: is the default on this track (``objective_params.kl_estimator`` picks a sampled estimator instead)
        self.iterations = 0
        self.schedule: dict[str, Any] | None = None
        if "iteration" in entry.inputs:
            if "iteration" in algo.objective_params:
                raise ValueError(f"algo.objective_params.iteration: the learner counts {algo.objective}'s "
                                 "iterations; remove it (total_iterations sets the schedule's length)")
            self.schedule = {"total_iterations": algo.objective_params.get("total_iterations", total_iterations)}
        self.analytic_kl = "kl" in entry.inputs and not {"kl", "kl_estimator"} & set(algo.objective_params)
        if self.analytic_kl and support is not None:
            raise ValueError(
                f"{algo.objective}'s analytic KL is over the full vocabulary, but sampling.logprob_support = kept "
                "scores on the truncated support: set objective_params.kl_estimator (e.g. k3) or "
                "sampling.logprob_support=full"
            )
        #: the advantage estimator's inputs (optimal_token_baseline reads the old logits and sum_v pi(v)^2)
        self.advantage_inputs = set(advantage.inputs)
        #: the estimator takes the task's ``[B, K]`` reward components as ``rewards`` (GDPO)
        self.reward_components = advantage.reward_components
        if self.ref_model is None and "ref_logp" in entry.requires:
            self.ref_model = copy.deepcopy(model).eval()  # the initial weights: the objective's KL base
        #: the objective's learner parts (``Entry.parts``), called at the hook points of scoring and the update
        self.hooks: list[LearnerHook] = []
        for part in parts:
            self.hooks.append(part(self))
        scorers = [type(h).__name__ for h in self.hooks if type(h).score is not LearnerHook.score]
        if len(scorers) > 1:
            raise ValueError(f"algo.objective = {algo.objective} with algo.advantage = {algo.advantage}: learner parts "
                             f"{scorers} each score the batch themselves; pick an advantage the objective does not "
                             "replace (e.g. grpo)")
        #: a hook trains on the problems' teacher-forced demonstrations: the sampler collects them
        self.wants_demonstrations = any(h.wants_demonstrations for h in self.hooks)
        #: one epoch, one minibatch, the current weights as old policy (and no hook that needs its own scoring
        #: forward): the training forward gives prox_logp exactly, so score() skips its own forward (set False
        #: to force it)
        self.reuse_forward = (
            algo.epochs == 1 and algo.minibatches == 1 and all(h.reuses_forward for h in self.hooks)
            and not observes(self.objective_state) and algo.kl_placement not in ("reward_token", "reward_seq")
            and not {"prox_logp", "sum_pi_sq"} & self.advantage_inputs
        )

    def hook(self, cls: type[H]) -> H:
        """This learner's hook of class ``cls`` (``ValueError`` if the objective runs without it)."""
        for h in self.hooks:
            if isinstance(h, cls):
                return h
        raise ValueError(f"objective {self.algo.objective!r} runs without the learner part {cls.__name__}")

    # scoring -----------------------------------------------------------------------------------
    @torch.no_grad()
    def logprobs(self, model: PreTrainedModel, exp: Experience) -> torch.Tensor:
        input_ids, attention, start = exp.rollout.model_inputs()
        logp = self._scores(model, input_ids, attention, start, exp.rollout.mask).logp
        return logp * exp.rollout.mask

    @torch.no_grad()
    def distributions(self, model: PreTrainedModel, exp: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T]`` log-probs of the batch's tokens and the ``[B, T, V]`` full log-softmax under ``model``."""
        input_ids, attention, start = exp.rollout.model_inputs()
        scores = self._scores(model, input_ids, attention, start, exp.rollout.mask, keep_distribution=True)
        assert scores.logp_all is not None
        return scores.logp * exp.rollout.mask, scores.logp_all

    def _scores(
        self, model: PreTrainedModel, input_ids: torch.Tensor, attention: torch.Tensor, start: int, mask: torch.Tensor,
        keep_distribution: bool = False,
    ) -> TokenScores:
        """Scores on the learner's support (``token_logprobs``); counts outside-support tokens."""
        scores = token_logprobs(model, input_ids, attention, start, self.temperature, self.support, keep_distribution)
        if self.support is not None:
            self.support_counts[0] += float((scores.outside * mask).sum())
            self.support_counts[1] += float(mask.sum())
        return scores

    def score(self, exp: Experience, prox_logp: torch.Tensor | None = None, adv: torch.Tensor | None = None) -> Scored:
        """Old logits (``prox_logp``: given by an old-logit strategy, else the current policy, which is
        exact in synchronous training), reference log-probs, and advantages (``adv``: kept from generation,
        for a replayed batch). An estimator that takes ``sum_pi_sq`` gets ``sum_v pi(v)^2`` per token from
        the current weights' full distribution (the policy that gives ``prox_logp`` in synchronous training;
        with an old-logit strategy's ``prox_logp``, the batch-start weights). A hook that scores batches
        itself (the SAFE critic) does all this instead. With reward models, the batch is first relabelled
        with their rewards (the verifier's kept as gold; :class:`~ratiolab.reward_model.RewardScorer`)."""
        if self.reward_model is not None:
            self.reward_model.relabel(exp)
        for h in self.hooks:
            if (scored := h.score(exp, prox_logp, adv)) is not None:
                return scored
        input_ids, attention, start = exp.rollout.model_inputs()
        mask = exp.rollout.mask.float()
        if self.analytic_kl and prox_logp is not None:
            raise ValueError(f"{self.algo.objective}: the analytic KL needs the old policy's full distribution, which "
                             "an old-logit strategy does not keep; set algo.objective_params.kl_estimator=k3")
        ref = self.logprobs(self.ref_model, exp) if self.ref_model is not None else None
        if prox_logp is None and self.reuse_forward:
            prox, full = torch.zeros_like(mask), None  # filled by update() from its training forward
            adv = self.advantages(exp, mask, prox, ref) if adv is None else adv
            return Scored(exp, input_ids, attention, start, mask, prox, ref, adv, prox_from_update=True)
        full = sum_pi_sq = None
        wants_pi_sq = adv is None and "sum_pi_sq" in self.advantage_inputs
        if self.analytic_kl or wants_pi_sq:
            current, full = self.distributions(self.model, exp)
            prox = current if prox_logp is None else prox_logp
            sum_pi_sq = (2.0 * full).exp().sum(-1) * mask if wants_pi_sq else None
            full = full if self.analytic_kl else None
        else:
            prox = self.logprobs(self.model, exp) if prox_logp is None else prox_logp
        adv = self.advantages(exp, mask, prox, ref, sum_pi_sq) if adv is None else adv
        return Scored(exp, input_ids, attention, start, mask, prox, ref, adv, prox_full=full)

    def rewards(self, exp: Experience) -> torch.Tensor:
        """``[B]`` rewards the advantages see: the task's, plus DAPO's overlong penalty (``algo.overlong_buffer``)."""
        if not self.algo.overlong_buffer:
            return exp.rewards
        assert self.max_response_length is not None
        lengths = exp.rollout.mask.sum(-1).to(exp.rewards.dtype)
        return exp.rewards + self.algo.overlong_penalty * overlong_penalty(
            lengths, self.max_response_length, self.algo.overlong_buffer)

    # replay ------------------------------------------------------------------------------------
    def replay(self, generator: torch.Generator) -> Scored | None:
        """A past batch a hook draws to train on instead of the fresh one (ReMix's window), else ``None``."""
        for h in self.hooks:
            if (scored := h.replay(generator)) is not None:
                return scored
        return None

    def remember(self, s: Scored) -> Scored:
        """Show the scored batch the loop trains on to every hook (ReMix keeps fresh ones in its window)."""
        for h in self.hooks:
            h.remember(s)
        return s

    def advantages(
        self, exp: Experience, mask: torch.Tensor, prox: torch.Tensor, ref: torch.Tensor | None,
        sum_pi_sq: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Advantages of ``algo.advantage`` broadcast to ``[B, T]``; KL shaping per ``algo.kl_placement``.

        An estimator whose entry declares ``reward_components`` (GDPO) takes the task's ``[B, K]`` reward
        components as ``rewards`` when the batch has them; the scalar-reward shapings (``reward_seq`` KL,
        DAPO's overlong penalty) have no component to act on and are refused there.
        """
        a = self.algo
        k1 = (prox - ref) * mask if ref is not None else None
        rewards = self.rewards(exp)
        if a.kl_placement == "reward_seq" and k1 is not None:
            rewards = rewards - self.kl_coef * k1.sum(-1)
        available: dict[str, Any] = {
            "rewards": rewards,
            "scores": rewards,
            "group_ids": exp.group_ids,
            "mask": mask,
            "greedy_rewards": exp.greedy_rewards,
            "prox_logp": prox,
            "sum_pi_sq": sum_pi_sq,
        }
        if self.reward_components and exp.reward_components is not None:
            if a.kl_placement == "reward_seq" or a.overlong_buffer:
                raise ValueError(
                    f"algo.advantage = {a.advantage} takes the task's {exp.reward_components.shape[1]} reward "
                    "components, which algo.kl_placement = reward_seq and algo.overlong_buffer (shapings of the "
                    "scalar reward) cannot shape; use kl_placement=loss and no overlong buffer"
                )
            available["rewards"] = exp.reward_components
        if a.kl_placement == "reward_token":
            available.update(kl=k1, beta=self.kl_coef)
        kwargs = {k: v for k, v in available.items() if k in self.advantage_inputs}
        adv = advantages.compute(a.advantage, **kwargs, **a.advantage_params)
        return (adv[:, None] if adv.dim() == 1 else adv).expand_as(mask) * mask

    @property
    def kl_coef(self) -> float:
        """The KL coefficient of this batch: ``algo.kl_coef``, or the adaptive controller's current value."""
        return 0.0 if self.kl_ctl is None else self.kl_ctl.value

    # update ------------------------------------------------------------------------------------
    def update(self, s: Scored, generator: torch.Generator) -> dict[str, float]:
        """``epochs`` x ``minibatches`` optimiser steps on the scored batch; mean metrics. An adaptive KL
        controller then takes one step from the batch's ``kl_ref/k3`` over its ``B`` sequences (once per batch,
        ``n_steps = B``, as verl and TRL)."""
        a = self.algo
        kl_coef = self.kl_coef
        if a.kl_placement == "loss":
            self.loss_params["kl_coef"] = kl_coef
        sums: dict[str, float] = defaultdict(float)
        n_steps = 0
        passes = a.epochs
        for h in self.hooks:
            s = h.before_update(s)
            passes = h.passes(passes)
        self.model.train()
        for _ in range(passes):
            for mb in self._group_order(s.exp, generator).chunk(a.minibatches):
                step_metrics = self._optimizer_step(s, mb)
                for k, v in step_metrics.items():
                    sums[k] += v
                n_steps += 1
        self.model.eval()
        self.iterations += 1
        metrics = {k: v / n_steps for k, v in sums.items()} | gold_metrics(s.exp)
        if self.algo.overlong_buffer:
            metrics["reward/overlong_penalty"] = float((self.rewards(s.exp) - s.exp.rewards).mean())
        if s.ref_logp is not None:
            metrics["kl_ref/k3"] = float(kl.estimate("k3", s.prox_logp, s.ref_logp).mul(s.mask).sum() / s.mask.sum())
        for h in self.hooks:
            metrics.update(h.after_batch(s, metrics, n_steps))
        if self.support is not None:  # share of the learner's scored tokens outside its kept support
            metrics["support/outside_frac"] = self.support_counts[0] / max(self.support_counts[1], 1.0)
            self.support_counts = [0.0, 0.0]
        if self.kl_ctl is not None:
            metrics["kl/coef"] = kl_coef
        if isinstance(self.kl_ctl, AdaptiveKLController):
            if s.ref_logp is None:
                raise ValueError("algo.kl_controller = adaptive measures KL(pi_old || ref) (kl_ref/k3): the learner "
                                 "needs its ref_model")
            self.kl_ctl.observe_kl(metrics["kl_ref/k3"], s.exp.size)  # n_steps = the batch's sequences
        return metrics

    def _group_order(self, exp: Experience, generator: torch.Generator) -> torch.Tensor:
        """Rows in a random order of whole prompt groups, so that every minibatch and micro-batch
        holds complete groups (group-relative objectives need them)."""
        n = self.algo.samples_per_prompt
        groups = torch.randperm(exp.size // n, generator=generator)
        return (groups[:, None] * n + torch.arange(n)).flatten()

    def _optimizer_step(self, s: Scored, mb: torch.Tensor) -> dict[str, float]:
        """One optimiser step on minibatch ``mb``, accumulated over ``micro_batches`` with global normalisers.

        A no-grad pass over the micro-batches first runs when the step needs the whole minibatch under the
        current weights: for an observing objective state, for the objective module's batch-global
        parameters (M2PO's cutoff; with one micro-batch the objective selects on it itself), and for kept
        counts whose old logits follow the current policy.
        """
        a = self.algo
        self.optimizer.zero_grad(set_to_none=True)
        counts = _counts(s.mask[mb])
        micros = mb.chunk(a.micro_batches)
        hook = self.batch_hook if len(micros) > 1 else None
        follows = s.prox_follow is not None or s.prox_from_update
        seen: list[PolicyLossInputs] = []
        if observes(self.objective_state) or hook is not None or (self.kept_denominator and follows):
            with torch.no_grad():
                seen = [self._inputs(s, micro, counts) for micro in micros]
        if self.kept_denominator:
            counts = self._kept_counts(s, mb, seen)
        if observes(self.objective_state):
            assert self.objective_state is not None
            for inputs in seen:
                self.objective_state.observe(inputs)
        rows: list[dict[str, torch.Tensor | float]] = []  # per micro-batch, on the device; reduced once below
        step: dict[str, torch.Tensor | float] = {}
        step_params: dict[str, Any] = {} if self.schedule is None else {"iteration": self.iterations, **self.schedule}
        if hook is not None:
            whole = _joined(seen)
            step_params.update(hook(whole, correction.log_ratio(whole.logp, whole.prox_logp), self.resolved))
        for h in self.hooks:
            step_params.update(h.extra_pass(s, micros, counts, step))
        with contextlib.ExitStack() as stack:
            for h in self.hooks:
                stack.enter_context(h.loss_pass())
            for n_micro, micro in enumerate(micros):
                extra = {"scores": s.exp.rewards[micro]} if self.wants_scores else {}
                for h in self.hooks:
                    extra.update(h.loss_inputs(s, micro))
                out = objectives.compute(  # the value checks (one host sync) run on the step's first micro-batch
                    a.objective, self._inputs(s, micro, counts, extra), validate=n_micro == 0, **self.loss_params,
                    **step_params, **extra,
                )
                loss = out.loss
                row: dict[str, torch.Tensor | float] = dict(out.metrics)
                for h in self.hooks:
                    if (added := h.extra_loss(s, micro, float(len(mb)), row)) is not None:
                        loss = loss + added
                loss.backward()
                row["loss"] = loss.detach()
                rows.append(row)
        step["reward/mean"] = s.exp.rewards[mb].mean()  # stateful objectives (SAFE) read it
        step["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.grad_clip)
        for h in self.hooks:
            step.update(h.before_step())
        self.optimizer.step()
        self.scheduler.step()
        # one device-to-host transfer per optimiser step: means over micro-batches, the losses summed
        metrics = objectives.reduce_metrics([*rows, step], total=("loss", "value/loss"))
        if self.objective_state is not None and not any(h.advances_state for h in self.hooks):
            self.objective_state.update(dict(metrics))  # a hook that advances it (ReMix) does so once per batch
        return metrics

    def _kept_counts(self, s: Scored, mb: torch.Tensor, seen: list[PolicyLossInputs]) -> tuple[float, float]:
        """Tokens and sequences of minibatch ``mb`` that the correction keeps (``mask * keep``): the
        normalisers of ``mask_denominator = kept``, from the no-grad pass ``seen`` when it ran."""
        if seen:
            whole = _joined(seen)
            assert whole.behav_logp is not None
            prox, behav, m = whole.prox_logp, whole.behav_logp, whole.mask
        else:
            m = s.mask[mb]
            prox, behav = s.prox_logp[mb], s.exp.rollout.behav_logp[mb].float() * m
        w_disc = correction.log_ratio(prox, behav).exp()
        return _counts(m * correction.apply_spec(self.resolved["correction"], w_disc, m).keep)

    def _inputs(
        self, s: Scored, micro: torch.Tensor, counts: tuple[float, float], extra: dict[str, Any] | None = None
    ) -> PolicyLossInputs:
        """The objective's inputs for rows ``micro`` (forward pass of the current policy included). With
        ``extra``, the loss pass: the analytic KL goes there (``kl``), and an on-policy batch takes its
        ``prox_logp`` rows from this forward (detached)."""
        ro = s.exp.rollout
        m = s.mask[micro]
        logp, entropy, _, full = self._scores(self.model, s.input_ids[micro], s.attention[micro], s.start, m,
                                              keep_distribution=self.analytic_kl)
        if s.prox_from_update:
            s.prox_logp[micro] = logp.detach() * m
        if extra is not None and self.analytic_kl:
            assert full is not None and (s.prox_from_update or s.prox_full is not None)
            old = full.detach() if s.prox_full is None else s.prox_full[micro]
            extra["kl"] = vocab_kl(full, old) * m
        return PolicyLossInputs(
            logp=logp * m,
            prox_logp=s.prox_logp[micro] if s.prox_follow is None else s.prox_follow(logp * m, micro),
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
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "objective_state": None if self.objective_state is None else self.objective_state.state_dict(),
            "iterations": self.iterations,
        }
        if self.kl_ctl is not None:
            state["kl_controller"] = self.kl_ctl.state_dict()
        if self.reward_model is not None:
            state["reward_model"] = self.reward_model.state_dict()
        for h in self.hooks:
            if h.state_key is not None:
                state[h.state_key] = h.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iterations = int(state["iterations"])
        saved = state.get("objective_state")
        if (saved is None) != (self.objective_state is None):
            raise ValueError(
                f"checkpoint objective state {'is missing' if saved is None else 'exists'} but objective "
                f"{self.algo.objective!r} {'needs' if saved is None else 'has'} none: resume with the same objective"
            )
        if self.objective_state is not None and saved is not None:
            self.objective_state.load_state_dict(saved)
        if self.kl_ctl is not None and "kl_controller" in state:
            self.kl_ctl.load_state_dict(state["kl_controller"])
        elif isinstance(self.kl_ctl, AdaptiveKLController):
            raise ValueError("checkpoint lacks the adaptive KL controller's state: resume with the "
                             "algo.kl_controller that wrote it")
        if self.reward_model is not None:
            if "reward_model" not in state:
                raise ValueError("checkpoint lacks the reward models' state: resume with the reward.models that "
                                 "wrote it")
            self.reward_model.load_state_dict(state["reward_model"])
        own = {h.state_key: h for h in self.hooks if h.state_key is not None}
        for key in sorted(set(state_keys()) | set(own)):
            if (key not in own) != (key not in state):
                raise ValueError(f"checkpoint {'lacks' if key in own else 'has'} {key} state for objective "
                                 f"{self.algo.objective!r}: resume with the objective that wrote it")
        for key, h in own.items():
            h.load_state_dict(state[key])

def make_optimizer(
    model: torch.nn.Module, algo: AlgoConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over all parameters (``algo.weight_decay`` on every one; betas ``(0.9, algo.adam_beta2)``,
    ``algo.adam_eps``) and the lr schedule, stepped once per optimiser step: ``lr * min(1, (s + 1) / warmup_steps)``,
    linear warm-up then constant."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=algo.lr, weight_decay=algo.weight_decay,
                                  betas=(0.9, algo.adam_beta2), eps=algo.adam_eps)
    warmup = max(algo.warmup_steps, 1)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))


def vocab_kl(logp_all: torch.Tensor, old_all: torch.Tensor) -> torch.Tensor:
    """Per-token ``KL(pi || pi_old) = sum_v pi(v) (log pi(v) - log pi_old(v))`` of ``[B, T, V]`` log-softmaxes."""
    return (logp_all.exp() * (logp_all - old_all)).sum(-1)


def overlong_penalty(lengths: torch.Tensor, max_length: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476): with ``L_exp = max_length - buffer``,
    ``0`` for ``|y| <= L_exp``, ``(L_exp - |y|) / buffer`` up to ``max_length``, ``-1`` beyond."""
    if not 0 < buffer <= max_length:
        raise ValueError(f"overlong buffer = {buffer} must be in (0, max_length = {max_length}]")
    return ((max_length - buffer - lengths) / buffer).clamp(min=-1.0, max=0.0)


def _counts(mask: torch.Tensor) -> tuple[float, float]:
    """``(num_tokens, num_seqs)`` of a ``[B, T]`` mask: its tokens and its non-empty rows (at least 1 each)."""
    return float(mask.sum().clamp(min=1.0)), float((mask.sum(-1) > 0).sum().clamp(min=1))


def _joined(parts: list[PolicyLossInputs]) -> PolicyLossInputs:
    """Micro-batch inputs as one batch, rows in order (normalisers of the first)."""
    names = [f.name for f in fields(PolicyLossInputs) if isinstance(getattr(parts[0], f.name), torch.Tensor)]
    tensors = {n: torch.cat([getattr(p, n) for p in parts]) for n in names}
    return PolicyLossInputs(**tensors, num_tokens=parts[0].num_tokens, num_seqs=parts[0].num_seqs)
