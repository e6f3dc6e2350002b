"""ReMix in the learner (arXiv 2507.06892, docs/methods/ratio-objectives.md §11): replay window, UTD,
pi_{k-1}, reincarnation."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ratiolab import tasks
from ratiolab.config import override
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.learner import TrainConfig, train
from ratiolab.learner.lm import LMLearner
from ratiolab.learner.replay import ReplayHook
from ratiolab.policies import build_policy
from ratiolab.rollout import Experience, collect
from ratiolab.runs import RunDir


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, list[Experience]]:
    model, tok = build_policy("tiny", seed=0)
    task = tasks.get("arithmetic", level=1)
    engine = HFEngine(model, tok, dtype=torch.float32)
    batches = []
    for seed in range(3):
        exp = collect(engine, task, task.sample(4, seed=seed), 2, SamplingParams(max_new_tokens=4), seed=seed)
        exp.rewards = torch.tensor([1.0, 0.0] * 4)
        batches.append(exp)
    return model, batches


def make(model: torch.nn.Module, *sets: str) -> LMLearner:
    cfg = override(TrainConfig(), ["algo.objective=remix", "algo.samples_per_prompt=2", *sets]).algo
    return LMLearner(copy.deepcopy(model), cfg, temperature=1.0)


def test_replay_probability_and_uniform_window(setup: tuple) -> None:
    model, batches = setup
    learner = make(model, "algo.remix.replay_prob=0.4")
    assert learner.replay(torch.Generator().manual_seed(0)) is None  # empty window: always fresh
    for exp in batches:
        learner.remember(learner.score(exp))
    assert [e for e, _ in learner.hook(ReplayHook).window.batches] == batches[1:]  # N = 2, oldest dropped
    template = learner.score(batches[0])
    learner.score = lambda exp, adv=None: replace(template, exp=exp, adv=adv)  # type: ignore[method-assign]
    drawn = [learner.replay(torch.Generator().manual_seed(i)) for i in range(1000)]
    replayed = [d for d in drawn if d is not None]
    assert abs(len(replayed) / 1000 - 0.4) < 0.06  # 4 sigma
    uids = [id(d.exp) for d in replayed]
    assert {id(b) for b in batches[1:]} == set(uids) and abs(uids.count(id(batches[1])) / len(uids) - 0.5) < 0.1
    assert all(d.replayed for d in replayed)
    learner.remember(replayed[0])
    assert [e for e, _ in learner.hook(ReplayHook).window.batches] == batches[1:]  # a replayed batch: not again


def test_replayed_batch_keeps_generation_advantages_and_rescored_prox(setup: tuple) -> None:
    model, batches = setup
    learner = make(model, "algo.remix.replay_prob=0.99")
    fresh = learner.remember(learner.score(batches[0]))
    learner.update(fresh, torch.Generator().manual_seed(0))  # the weights move
    again = next(r for i in range(20) if (r := learner.replay(torch.Generator().manual_seed(i))) is not None)
    assert torch.equal(again.adv, fresh.adv)  # advantages from generation
    assert torch.equal(again.exp.rollout.behav_logp, batches[0].rollout.behav_logp)  # pi_{k-i}
    assert torch.equal(again.prox_logp, learner.logprobs(learner.model, batches[0]))  # pi_k: iteration start
    assert not torch.allclose(again.prox_logp, fresh.prox_logp)


def test_utd_passes_and_reincarnation_swaps_the_reference_at_t(setup: tuple) -> None:
    model, batches = setup
    learner = make(model, "algo.remix.reincarnation_step=2", "algo.objective_params={beta: 0.001}",
                   "algo.minibatches=2", "algo.epochs=1")
    assert learner.ref_model is not None  # beta > 0 without a reference: the initial weights are the base
    base = copy.deepcopy(learner.ref_model.state_dict())
    history = []
    for k, exp in enumerate(batches):
        start = copy.deepcopy(learner.model.state_dict())
        steps_before = learner.scheduler.last_epoch
        metrics = learner.update(learner.remember(learner.score(exp)), torch.Generator().manual_seed(k))
        history.append((metrics, learner.scheduler.last_epoch - steps_before))
        # the pi_{k-1} snapshot now holds this iteration's start weights
        assert all(torch.equal(start[n], v) for n, v in learner.hook(ReplayHook).prev_model.state_dict().items())
        ref = learner.ref_model.state_dict()
        if k == 0:
            assert all(torch.equal(base[n], v) for n, v in ref.items())
        if k == 1:  # t reached T = 2: the base is pi_T, the current weights
            assert all(torch.equal(learner.model.state_dict()[n], v) for n, v in ref.items())
            pi_t = copy.deepcopy(ref)
        if k == 2:
            assert all(torch.equal(pi_t[n], v) for n, v in ref.items())
            assert any(not torch.equal(learner.model.state_dict()[n], v) for n, v in ref.items())
    # m = 2 passes x 2 minibatches before reincarnation, plain on-policy (1 pass) after it
    assert [n for _, n in history] == [4, 4, 2]
    assert [m["remix/passes"] for m, _ in history] == [4.0, 4.0, 2.0]
    assert [m["remix/reincarnated"] for m, _ in history] == [0.0, 1.0, 1.0]
    assert all(0 < m["remix/kl_convex_lambda"] <= 1 for m, _ in history)
    assert learner.hook(ReplayHook).window.batches == []
    assert learner.replay(torch.Generator().manual_seed(0)) is None


SMALL = [
    "policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=4", "algo.samples_per_prompt=2",
    "algo.minibatches=2", "algo.micro_batches=1", "sampling.max_new_tokens=4", "eval_size=8", "eval_every=2",
    "checkpoint_every=2", "threads=1", "algo.objective=remix", "algo.remix.replay_prob=0.6",
    "algo.remix.reincarnation_step=4", "algo.objective_params={beta: 0.001}",
]


def test_remix_run_resumes_bit_for_bit_and_replays(tmp_path: Path) -> None:
    def cfg(name: str, steps: int) -> TrainConfig:
        return override(TrainConfig(), [*SMALL, f"policy.cache_dir={tmp_path / 'cache'}",
                                        f"run_dir={tmp_path / name}", f"steps={steps}"])

    full = train(cfg("a", 6), log=lambda _: None)
    train(cfg("b", 3), log=lambda _: None)  # checkpoint at step 2 and 3: the window is saved non-empty
    resumed = train(cfg("b", 6), resume=True, log=lambda _: None)
    a = load_file(str(full.run_dir / "checkpoints" / "step-00000006" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "checkpoints" / "step-00000006" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [r for r in RunDir.open(full.run_dir).metrics() if r["step"] > 0]
    rows_b = [r for r in RunDir.open(resumed.run_dir).metrics() if r["step"] > 0]
    for key in ("loss", "remix/replayed", "reward/mean"):
        assert [r[key] for r in rows] == [r[key] for r in rows_b], key
    replayed = [r["remix/replayed"] for r in rows]
    assert sum(replayed) >= 1 and rows[-1]["remix/replayed_total"] == sum(replayed)
    assert all(r == 0.0 for r in replayed[4:])  # no replay after reincarnation at t = 4
    assert all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
