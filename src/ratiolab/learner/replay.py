"""ReMix's replay window (arXiv 2507.06892, docs/methods/ratio-objectives.md §11): the last N fresh batches.

Each entry keeps the batch as generated (the rollout with the generator's ``behav_logp``) and its
advantages computed once at generation; a replayed batch is re-scored only for ``prox_logp`` (the
policy at the start of the iteration, the band centre). Draws are uniform over the window (nu
uniform, [inferred]).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from ratiolab.config.train import AlgoConfig
from ratiolab.learner.hooks import LearnerHook, Scored, register_hook
from ratiolab.objectives.remix import RemixState
from ratiolab.rollout import Experience

if TYPE_CHECKING:
    from ratiolab.learner.lm import LMLearner


@dataclass
class ReplayWindow:
    """A FIFO of at most ``size`` ``(experience, advantages)`` pairs."""

    size: int
    batches: list[tuple[Experience, torch.Tensor]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"remix: the replay window must hold >= 1 batch, got {self.size}")

    def add(self, exp: Experience, adv: torch.Tensor) -> None:
        self.batches = [*self.batches, (exp, adv.detach().clone())][-self.size:]

    def draw(self, generator: torch.Generator) -> tuple[Experience, torch.Tensor]:
        """A uniform draw over the window (which must not be empty)."""
        if not self.batches:
            raise ValueError("remix: cannot replay from an empty window")
        i = int(torch.randint(len(self.batches), (), generator=generator))
        return self.batches[i]

    def clear(self) -> None:
        self.batches = []

    def state_dict(self) -> dict[str, Any]:
        """The window's contents (a checkpoint stores the scored batches as safetensors + JSON)."""
        return {"size": self.size, "batches": list(self.batches)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["size"] != self.size:
            raise ValueError(f"checkpoint replay window holds {state['size']} batches, this run {self.size}: "
                             "resume with the same algo.remix.window")
        self.batches = list(state["batches"])


@register_hook("replay")
class ReplayHook(LearnerHook):
    """The learner part ``replay`` (ReMix, ``algo.remix``): window, UTD, pi_{k-1} and reincarnation.

    :meth:`replay` draws a past batch from the window of the last N fresh batches (:meth:`remember`),
    re-scored for ``prox_logp`` with the iteration-start weights and keeping its generation-time advantages;
    ``utd x epochs`` passes per batch; with ``beta`` the objective gets ``prev_logp`` from a snapshot of the
    previous iteration's weights (pi_{k-1}; pi_k at the first iteration, [inferred]) and, without a reference
    model, the initial weights become the KL base. The objective's :class:`RemixState` advances once per batch
    (not per optimiser step); when it reincarnates, the reference takes the current weights and the window
    empties (replay and UTD stop). Window, snapshot and reference are checkpointed (key ``remix``).
    """

    state_key = "remix"
    advances_state = True

    def __init__(self, learner: LMLearner) -> None:
        super().__init__(learner)
        if not isinstance(learner.objective_state, RemixState):
            raise ValueError(f"objective {learner.algo.objective!r}: the replay part needs a RemixState, got "
                             f"{type(learner.objective_state).__name__}")
        self.state = learner.objective_state
        self.window = ReplayWindow(learner.algo.remix.window)
        self.kl_convex = bool(learner.resolved["beta"])
        #: the pi_{k-1} snapshot (KL-Convex only) and the count of replayed batches trained on
        self.prev_model: PreTrainedModel | None = None
        self.replayed_total = 0
        if self.kl_convex and learner.ref_model is None:
            learner.ref_model = copy.deepcopy(learner.model).eval()  # the initial weights: the KL base
        if not self.kl_convex:
            warnings.warn("remix runs without its KL-Convex term (objective_params.beta = 0): mix-policy PPO, UTD and "
                          "reincarnation only; the ReMix recipe sets beta=0.001", stacklevel=3)

    @classmethod
    def state_params(cls, algo: AlgoConfig) -> dict[str, Any]:
        """The schedule of ``algo.remix`` configures the :class:`RemixState`."""
        return {"reincarnation_step": algo.remix.reincarnation_step, "replay_prob": algo.remix.replay_prob}

    def replay(self, generator: torch.Generator) -> Scored | None:
        """With probability ``replay_prob`` (0 after reincarnation) a past batch drawn uniformly from the window,
        re-scored with the current (iteration-start) weights and carrying its generation-time advantages;
        ``None`` for a fresh batch or while the window is empty."""
        if not self.window.batches or float(torch.rand((), generator=generator)) >= self.state.replay_prob:
            return None
        exp, adv = self.window.draw(generator)
        return replace(self.learner.score(exp, adv=adv), replayed=True)

    def remember(self, s: Scored) -> None:
        """Add a fresh scored batch (rollout, behaviour log-probs, advantages) to the window."""
        if not (s.replayed or self.state.reincarnated):
            self.window.add(s.exp, s.adv)

    def before_update(self, s: Scored) -> Scored:
        return replace(s, prev_logp=self._prev_logp(s.exp)) if self.kl_convex else s

    def passes(self, epochs: int) -> int:
        return epochs if self.state.reincarnated else epochs * self.learner.algo.remix.utd

    def loss_inputs(self, s: Scored, micro: torch.Tensor) -> dict[str, Any]:
        return {} if s.prev_logp is None else {"prev_logp": s.prev_logp[micro]}

    def _prev_logp(self, exp: Experience) -> torch.Tensor:
        """Log-probs under pi_{k-1}, the snapshot of the previous iteration's start weights (a copy of the
        current weights at the first iteration); the snapshot then moves to the current weights."""
        model = self.learner.model
        if self.prev_model is None:
            self.prev_model = copy.deepcopy(model).eval()
        logp = self.learner.logprobs(self.prev_model, exp)
        self.prev_model.load_state_dict(model.state_dict())
        return logp

    def after_batch(self, s: Scored, metrics: dict[str, float], n_steps: int) -> dict[str, float]:
        """Advance the schedule by one batch; at reincarnation the reference takes the current weights (pi_T)
        and the window empties."""
        st, lrn = self.state, self.learner
        self.replayed_total += int(s.replayed)
        was = st.reincarnated
        st.update(metrics)
        if st.reincarnated and not was:
            if lrn.ref_model is not None:
                lrn.ref_model.load_state_dict(lrn.model.state_dict())
            self.window.clear()
        return {"remix/replayed": float(s.replayed), "remix/replayed_total": float(self.replayed_total),
                "remix/passes": float(n_steps), "remix/reincarnated": float(st.reincarnated)}

    def state_dict(self) -> dict[str, Any]:
        ref = self.learner.ref_model if self.state.reincarnated else None
        return {
            "window": self.window.state_dict(),
            "replayed_total": self.replayed_total,
            "prev_model": None if self.prev_model is None else _cloned(self.prev_model),
            "ref_model": None if ref is None else _cloned(ref),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        lrn = self.learner
        self.window.load_state_dict(state["window"])
        self.replayed_total = int(state["replayed_total"])
        self.prev_model = None
        if state["prev_model"] is not None:
            self.prev_model = copy.deepcopy(lrn.model).eval()
            self.prev_model.load_state_dict(state["prev_model"])
        if state["ref_model"] is not None:
            if lrn.ref_model is None:
                lrn.ref_model = copy.deepcopy(lrn.model).eval()
            lrn.ref_model.load_state_dict(state["ref_model"])


def _cloned(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
