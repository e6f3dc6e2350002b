"""CHORD's expert SFT term (arXiv 2508.11408, docs/methods/rlhf.md §3) as a learner hook.

The learner part ``expert_sft`` asks the sampler for each problem's teacher-forced demonstration
(``Experience.expert``, :func:`ratiolab.rollout.expert.expert_rollout`), hands the objective the learner's
``step`` (batches trained so far) for its ``mu`` schedule, and adds ``mu(step) L_SFT`` to each micro-batch's
loss, where ``L_SFT`` (:func:`ratiolab.objectives.chord.sft_loss`) is the token mean over the demonstrations
of the minibatch's prompt groups: its normaliser counts the whole minibatch's demonstration tokens, so the
micro-batch terms sum to it (the spec's "mean over expert samples" at minibatch level). Metrics per optimiser
step: ``sft/loss`` (the minibatch's ``L_SFT``), ``sft/tokens`` (its demonstration tokens), ``sft/mu``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ratiolab.learner.hooks import LearnerHook, Scored, register_hook
from ratiolab.objectives.chord import MuSchedule, sft_loss

if TYPE_CHECKING:
    from ratiolab.learner.lm import LMLearner


@register_hook("expert_sft")
class ExpertSftHook(LearnerHook):
    """The learner part ``expert_sft``: ``mu(step) L_SFT`` on the problems' demonstrations (see the module)."""

    wants_demonstrations: ClassVar[bool] = True
    reuses_forward = True  # the rollout rows' prox_logp still comes from the update's own forward

    def __init__(self, learner: LMLearner) -> None:
        super().__init__(learner)
        self.schedule = MuSchedule.of(learner.resolved)
        self.weighting = str(learner.resolved["sft_weighting"])
        self.mu = self.schedule(0)
        self.num_tokens = 1.0
        self.loss_sum = torch.zeros(())

    def before_update(self, s: Scored) -> Scored:
        if s.exp.expert is None:
            raise ValueError(f"objective {self.learner.algo.objective!r} trains on the problems' demonstrations, "
                             "but the batch has none (Experience.expert): collect it with with_expert=True "
                             "(the synchronous `ratiolab train` loop does; async_rl actors do not)")
        self.mu = self.schedule(self.learner.iterations)
        return s

    def loss_inputs(self, s: Scored, micro: torch.Tensor) -> dict[str, Any]:
        return {"step": self.learner.iterations}

    def _rows(self, micro: torch.Tensor) -> torch.Tensor:
        """Demonstration rows of ``micro``'s groups: one per group, counted where its first sample is."""
        n = self.learner.algo.samples_per_prompt
        return micro[micro % n == 0] // n

    def extra_pass(
        self, s: Scored, micros: tuple[torch.Tensor, ...], counts: tuple[float, float],
        step: dict[str, torch.Tensor | float],
    ) -> dict[str, Any]:
        assert s.exp.expert is not None
        rows = torch.cat([self._rows(m) for m in micros])
        self.num_tokens = float(s.exp.expert.mask[rows].sum().clamp(min=1.0))
        self.loss_sum = torch.zeros(())
        return {}

    def extra_loss(
        self, s: Scored, micro: torch.Tensor, num_seqs: float, metrics: dict[str, torch.Tensor | float]
    ) -> torch.Tensor | None:
        ex = s.exp.expert
        assert ex is not None
        rows = self._rows(micro)
        if not len(rows):
            return None
        input_ids, attention, start = ex.model_inputs()
        m = ex.mask[rows].float()
        logp = self.learner._scores(self.learner.model, input_ids[rows], attention[rows], start, m).logp
        loss, _ = sft_loss(logp * m, m, self.weighting, self.num_tokens)
        self.loss_sum = self.loss_sum + loss.detach()
        return self.mu * loss

    def before_step(self) -> dict[str, float]:
        return {"sft/loss": float(self.loss_sum), "sft/tokens": self.num_tokens, "sft/mu": self.mu}
