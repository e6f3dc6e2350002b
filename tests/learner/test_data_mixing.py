"""Data mixing in the LM learner: CHORD's expert SFT hook, PrefixRL's prefixes and ReMax's greedy baseline,
wired through ``LMLearner`` and run end to end by ``ratiolab train``."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from ratiolab import tasks
from ratiolab.cli import main
from ratiolab.config import override
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.learner import TrainConfig
from ratiolab.learner.lm import LMLearner
from ratiolab.objectives.chord import sft_loss
from ratiolab.policies import build_policy, token_logprobs
from ratiolab.rollout import Experience, collect
from ratiolab.runs import RunDir

SMALL = [
    "policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=4", "algo.samples_per_prompt=2",
    "algo.minibatches=2", "algo.micro_batches=2", "sampling.max_new_tokens=4", "eval_size=4", "eval_every=10",
    "checkpoint_every=10", "threads=1",
]


@pytest.fixture(scope="module")
def mixed() -> tuple[torch.nn.Module, Experience]:
    """A tiny untrained policy, 4 level-2 prompts x 2 responses with fixed rewards, and the demonstrations."""
    model, tok = build_policy("tiny", seed=0)
    task = tasks.get("arithmetic", level=2)
    exp = collect(HFEngine(model, tok, dtype=torch.float32), task, task.sample(4, seed=1), 2,
                  SamplingParams(max_new_tokens=4), seed=2, with_expert=True)
    exp.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    return model, exp


def chord_learner(model: torch.nn.Module, *sets: str) -> LMLearner:
    cfg = override(TrainConfig(), ["algo.objective=chord", "algo.samples_per_prompt=2", *sets]).algo
    return LMLearner(copy.deepcopy(model), cfg, temperature=1.0)


def test_chord_loss_is_mu_times_the_sft_of_the_demonstrations(mixed: tuple) -> None:
    # all rewards equal: the group advantages are 0, so the step's loss is mu * L_SFT of the 4 demonstrations
    model, exp = mixed
    exp = copy.copy(exp)
    exp.rewards = torch.ones(8)
    learner = chord_learner(model, "algo.minibatches=1", "algo.micro_batches=2",
                            "algo.objective_params={mu_peak: 0.3, mu_valley: 0.3}")
    ex = exp.expert
    ids, attention, start = ex.model_inputs()
    with torch.no_grad():
        logp = token_logprobs(learner.model, ids, attention, start, 1.0).logp
    expected, _ = sft_loss(logp * ex.mask, ex.mask, "phi")
    metrics = learner.update(learner.score(exp), torch.Generator().manual_seed(0))
    assert metrics["sft/mu"] == 0.3 and metrics["chord/mu"] == pytest.approx(0.3)
    assert metrics["sft/tokens"] == float(ex.mask.sum())
    assert metrics["sft/loss"] == pytest.approx(float(expected), rel=1e-5)
    assert metrics["loss"] == pytest.approx(0.3 * float(expected), rel=1e-5)


def test_chord_micro_batches_reproduce_the_full_minibatch_gradient(mixed: tuple) -> None:
    # the SFT term's normaliser counts the whole minibatch's demonstration tokens, so 4 micro-batches
    # accumulate the gradient of one (the step's gradient is left in .grad after the update)
    model, exp = mixed
    grads, sft = [], []
    for micro in (1, 4):
        learner = chord_learner(model, "algo.minibatches=1", f"algo.micro_batches={micro}", "algo.grad_clip=1e9",
                                "algo.objective_params={mu_peak: 0.5, mu_valley: 0.5}")
        metrics = learner.update(learner.score(exp), torch.Generator().manual_seed(0))
        grads.append(torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None]))
        sft.append(metrics["sft/loss"])
    assert float(grads[0].abs().max()) > 1e-3
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    assert sft[0] == pytest.approx(sft[1], rel=1e-5)


def test_chord_without_demonstrations_says_how_to_get_them(mixed: tuple) -> None:
    model, exp = mixed
    bare = copy.copy(exp)
    bare.expert = None
    learner = chord_learner(model)
    with pytest.raises(ValueError, match=r"objective 'chord' trains on the problems' demonstrations.*with_expert"):
        learner.update(learner.score(bare), torch.Generator().manual_seed(0))


def test_remax_advantage_is_the_discounted_difference_to_the_greedy_reward(mixed: tuple) -> None:
    model, exp = mixed
    exp = copy.copy(exp)
    exp.greedy_rewards = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    cfg = override(TrainConfig(), ["algo.objective=pg", "algo.advantage=remax", "algo.samples_per_prompt=2"]).algo
    adv = LMLearner(copy.deepcopy(model), cfg, temperature=1.0).score(exp).adv
    m = exp.rollout.mask
    to_end = torch.flip(torch.cumsum(torch.flip(m, [1]), 1), [1])  # T - t + 1 on valid tokens
    expected = 0.95**to_end * (exp.rewards - exp.greedy_rewards)[:, None] * m
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)
    assert float(adv[2].abs().sum()) > 0 and float(adv[4].abs().sum()) > 0


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def run(tmp: Path, cache: Path, steps: int, *sets: str) -> list[dict]:
    args = ["train", "--run-dir", str(tmp / "run")]
    for s in [*SMALL, f"policy.cache_dir={cache}", f"steps={steps}", *sets]:
        args += ["--set", s]
    assert main(args) == 0
    return [r for r in RunDir.open(tmp / "run").metrics() if r["step"] > 0]


def test_train_chord_runs_the_sft_term_on_its_schedule(tmp_path: Path, cache: Path) -> None:
    rows = run(tmp_path, cache, 3, "algo.objective=chord",
               "algo.objective_params={mu_warmup: 2, mu_decay: 2, mu_peak: 0.5, mu_valley: 0.1}")
    assert [r["sft/mu"] for r in rows] == [0.0, 0.25, 0.5]  # warm-up 0 -> 0.25, then the peak at step 2
    assert all(r["sft/tokens"] > 0 and r["sft/loss"] > 0 for r in rows)


def test_train_with_prefixes_masks_the_prefix_tokens(tmp_path: Path, cache: Path) -> None:
    rows = run(tmp_path, cache, 2, "prefix.prob=1.0", "prefix.fraction=0.5", "task.params={level: 3}")
    assert all(r["prefix/tokens"] > 0 and 0 < r["prefix/rows"] <= 1 for r in rows)


def test_train_remax_logs_the_greedy_baseline(tmp_path: Path, cache: Path) -> None:
    rows = run(tmp_path, cache, 2, "algo.objective=pg", "algo.advantage=remax")
    assert all("reward/greedy_mean" in r for r in rows)
