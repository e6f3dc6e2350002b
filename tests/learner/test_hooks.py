"""Learner hooks are extension points: a part registered only here, on a throwaway objective, is called by
:class:`LMLearner` at every hook point and checkpointed, with no change to the learner."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch

from ratiolab.config import override
from ratiolab.config.train import AlgoConfig
from ratiolab.learner import TrainConfig
from ratiolab.learner.hooks import HOOKS, LearnerHook, Scored
from ratiolab.learner.lm import LMLearner
from ratiolab.objectives import COMMON, OBJECTIVES, ObjectiveState
from ratiolab.registry import Registry
from ratiolab.rollout import Experience
from ratiolab.types import PolicyLossInputs


@dataclasses.dataclass
class _Count(ObjectiveState):
    METHOD = "toy_probe"
    seed: int = 0
    steps: int = 0

    def update(self, metrics: dict[str, float]) -> None:
        self.steps += 1


def _toy(
    inputs: PolicyLossInputs, log_r: torch.Tensor, *, scale: float = 1.0, probe: torch.Tensor | None = None,
    state: _Count | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``-scale * r * A``; ``probe`` (a per-row input a hook supplies) is reported as ``probe/rows``."""
    rows = torch.zeros(()) if probe is None else torch.tensor(float(probe.numel()))
    return -scale * log_r.exp() * inputs.adv, {"probe/rows": rows}


class _Probe(LearnerHook):
    state_key = "probe"
    advances_state = True

    def __init__(self, learner: LMLearner) -> None:
        super().__init__(learner)
        self.calls: list[str] = []
        self.batches = 0

    @classmethod
    def state_params(cls, algo: AlgoConfig) -> dict[str, Any]:
        return {"seed": algo.samples_per_prompt + 40}

    def score(self, exp: Experience, prox_logp: torch.Tensor | None, adv: torch.Tensor | None) -> None:
        self.calls.append("score")

    def replay(self, generator: torch.Generator) -> None:
        self.calls.append("replay")

    def remember(self, s: Scored) -> None:
        self.calls.append("remember")

    def before_update(self, s: Scored) -> Scored:
        self.calls.append("before_update")
        return dataclasses.replace(s, adv=2.0 * s.adv)

    def passes(self, epochs: int) -> int:
        return 3 * epochs

    def extra_pass(self, s: Scored, micros: tuple[torch.Tensor, ...], counts: tuple[float, float],
                   step: dict[str, torch.Tensor | float]) -> dict[str, Any]:
        self.calls.append("extra_pass")
        return {"scale": 0.5}

    def loss_inputs(self, s: Scored, micro: torch.Tensor) -> dict[str, Any]:
        return {"probe": micro}

    def extra_loss(self, s: Scored, micro: torch.Tensor, num_seqs: float,
                   metrics: dict[str, torch.Tensor | float]) -> torch.Tensor:
        return torch.tensor(10.0)

    def before_step(self) -> dict[str, float]:
        self.calls.append("before_step")
        return {"probe/before_step": 1.0}

    def after_batch(self, s: Scored, metrics: dict[str, float], n_steps: int) -> dict[str, float]:
        self.batches += 1
        return {"probe/n_steps": float(n_steps)}

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = state["batches"]


@pytest.fixture
def probe_objective(monkeypatch: pytest.MonkeyPatch) -> None:
    """``toy_probe``: a throwaway objective entry that runs with the learner part ``probe`` (:class:`_Probe`)."""
    scratch = Registry("objective", common=COMMON)
    scratch.add("toy_probe", _toy, arxiv="", summary="toy", parts=("probe",), inputs=("probe",), state=_Count)
    monkeypatch.setitem(OBJECTIVES._entries, "toy_probe", scratch.get("toy_probe"))
    monkeypatch.setitem(HOOKS, "probe", _Probe)


def _learner(model: torch.nn.Module, objective: str) -> LMLearner:
    sets = [f"algo.objective={objective}", "algo.samples_per_prompt=2", "algo.minibatches=2", "algo.micro_batches=2"]
    return LMLearner(copy.deepcopy(model), override(TrainConfig(), sets).algo, temperature=1.0)


def test_a_new_hook_is_called_at_its_points(setup: tuple, probe_objective: None) -> None:
    model, exp = setup
    learner = _learner(model, "toy_probe")
    probe = learner.hook(_Probe)
    assert isinstance(learner.objective_state, _Count) and learner.objective_state.seed == 42  # state_params
    assert not learner.reuse_forward  # a hook does not keep the on-policy shortcut unless it says so
    assert learner.replay(torch.Generator().manual_seed(0)) is None
    s = learner.remember(learner.score(exp))
    steps_before = learner.scheduler.last_epoch
    metrics = learner.update(s, torch.Generator().manual_seed(0))
    # 3 x 1 epoch (passes) x 2 minibatches: 6 optimiser steps, each with its pre-pass and its before_step
    assert learner.scheduler.last_epoch - steps_before == 6 and metrics["probe/n_steps"] == 6.0
    assert probe.calls == ["replay", "score", "remember", "before_update", *["extra_pass", "before_step"] * 6]
    assert metrics["probe/before_step"] == 1.0 and metrics["probe/rows"] == 2.0  # 4 rows / 2 micro-batches
    assert learner.objective_state.steps == 0  # advances_state: the learner leaves the state to the hook

    # the loss is the objective's with the hook's parameter and advantages, plus the hook's extra loss
    fresh = _learner(model, "toy_probe")
    s2 = fresh.score(exp)
    mb = torch.arange(4)
    fresh.hooks = []  # the first step by hand: the objective alone on minibatch rows 0..3, scale 0.5, adv x 2
    plain = fresh._optimizer_step(dataclasses.replace(s2, adv=2.0 * s2.adv), mb)
    again = _learner(model, "toy_probe")
    hooked = again._optimizer_step(again.hook(_Probe).before_update(again.score(exp)), mb)
    assert hooked["loss"] == pytest.approx(0.5 * plain["loss"] + 2 * 10.0, rel=1e-5)

    # checkpointed under its key; a learner without the part refuses that checkpoint
    state = learner.state_dict()
    assert state["probe"] == {"batches": 1}
    restored = _learner(model, "toy_probe")
    restored.load_state_dict(copy.deepcopy(state))
    assert restored.hook(_Probe).batches == 1
    with pytest.raises(ValueError, match="checkpoint has probe state for objective 'ppo'"):
        _learner(model, "ppo").load_state_dict({**state, "objective_state": None})
    with pytest.raises(ValueError, match="checkpoint lacks probe state for objective 'toy_probe'"):
        restored.load_state_dict({k: v for k, v in state.items() if k != "probe"})


def test_an_unregistered_part_is_refused(setup: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = Registry("objective", common=COMMON)
    scratch.add("toy_partless", _toy, arxiv="", summary="toy", parts=("nowhere",))
    monkeypatch.setitem(OBJECTIVES._entries, "toy_partless", scratch.get("toy_partless"))
    with pytest.raises(ValueError, match=r"'toy_partless' runs with learner part\(s\) \['nowhere'\] that no hook"):
        _learner(setup[0], "toy_partless")
