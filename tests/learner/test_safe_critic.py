"""SAFE's double soft-min critic (ryyzn9/SAFE, docs/methods/ratio-objectives.md §12) and its use by the learner."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ratiolab import tasks
from ratiolab.config import override
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.learner import TrainConfig
from ratiolab.learner.critic import CriticHook, DoubleCritic, RewardNormalizer, critic_advantages, value_loss
from ratiolab.learner.lm import LMLearner
from ratiolab.policies import build_policy
from ratiolab.rollout import Experience, collect


def test_value_loss_worked_numbers() -> None:
    # row 1: Huber_0.5(1.0 - 0.2) = 0.5 (0.8 - 0.25) = 0.275; clipped V 0.7: 0.5 * 0.5^2 = 0.125
    # row 2: Huber_0.5(0.0 - 1.5) = 0.5 (1.5 - 0.25) = 0.625; clipped V 0.3: 0.5 (1.2 - 0.25) = 0.475
    # 0.5 [mean(0.275, 0.625) + mean(0.125, 0.475)] = 0.5 (0.45 + 0.3) = 0.375
    v, old, target = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), torch.tensor([0.2, 1.5])
    assert float(value_loss(v, old, target)) == pytest.approx(0.375, abs=1e-6)
    halves = value_loss(v[:1], old[:1], target[:1], num_seqs=2) + value_loss(v[1:], old[1:], target[1:], num_seqs=2)
    assert float(halves) == pytest.approx(0.375, abs=1e-6)  # micro-batch rows sum to the mean


def test_double_critic_soft_min_example() -> None:
    critic = DoubleCritic(8, alpha=0.3)
    with torch.no_grad():
        for head, value in ((critic.v1, 1.0), (critic.v2, 2.0)):
            head[2].weight.zero_()
            head[2].bias.fill_(value)
    v = critic(torch.randn(3, 8))
    torch.testing.assert_close(v, torch.full((3,), 1.197428), atol=1e-6, rtol=0)


def test_advantage_formula_and_reward_normaliser() -> None:
    # d = R - V = [0.5, -0.5, 1.5]: mean 0.5, unbiased std 1 -> A = [0, -1, 1]
    a = critic_advantages(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, 0.5, 0.5]))
    torch.testing.assert_close(a, torch.tensor([0.0, -1.0, 1.0]), atol=1e-6, rtol=0)
    norm = RewardNormalizer()  # count 1e-4, mean 0, var 1; batch mean 1, unbiased var 1, n = 3
    norm.update(torch.tensor([1.0, 0.0, 2.0]))
    total = 3.0001
    mean = 3.0 / total
    var = (1e-4 + 3.0 + 1e-4 * 3.0 / total) / total
    assert (norm.mean, norm.var, norm.count) == pytest.approx((mean, var, total), abs=1e-9)
    out = norm.normalize(torch.tensor([2.0], dtype=torch.float64))
    assert float(out) == pytest.approx((2.0 - mean) / (math.sqrt(var) + 1e-8), abs=1e-9)


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, Experience]:
    model, tok = build_policy("tiny", seed=0)
    task = tasks.get("arithmetic", level=1)
    exp = collect(HFEngine(model, tok, dtype=torch.float32), task, task.sample(4, seed=1), 2,
                  SamplingParams(max_new_tokens=5), seed=2)
    exp.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    return model, exp


def cut_rows(exp: Experience) -> Experience:
    """An untrained policy never stops: cut rows to different lengths, as EOS would."""
    exp = copy.deepcopy(exp)
    ro = exp.rollout
    ro.lengths = torch.tensor([5, 3, 4, 2, 5, 1, 3, 4])
    ro.mask = (torch.arange(ro.tokens.shape[1]) < ro.lengths[:, None]).to(ro.mask.dtype)
    ro.behav_logp = ro.behav_logp * ro.mask
    return exp


def make(model: torch.nn.Module, objective: str = "safe", *sets: str) -> LMLearner:
    cfg = override(TrainConfig(), [f"algo.objective={objective}", "algo.samples_per_prompt=2", *sets]).algo
    torch.manual_seed(0)  # the critic's initial weights (train() seeds them from cfg.seed)
    return LMLearner(copy.deepcopy(model), cfg, temperature=1.0)


@pytest.mark.parametrize("objective", ["safe", "safe_fixed"])
def test_training_reduces_the_value_loss_on_a_fixed_batch(setup: tuple, objective: str) -> None:
    model, exp = setup
    learner = make(model, objective, "algo.minibatches=1", "algo.micro_batches=2", "algo.lr=1e-3")
    losses = []
    torch.set_flush_denormal(True)  # tiny weights/activations otherwise slow CPU kernels down up to 30x
    try:
        for k in range(6):
            metrics = learner.update(learner.score(exp), torch.Generator().manual_seed(k))
            losses.append(metrics["value/loss"])
            assert metrics["value/grad_norm"] >= 0 and math.isfinite(metrics["loss"])
    finally:
        torch.set_flush_denormal(False)
    assert losses[-1] < 0.5 * losses[0], losses


def test_checkpoint_round_trip(setup: tuple) -> None:
    model, exp = setup
    a = make(model)
    a.update(a.score(exp), torch.Generator().manual_seed(0))
    b = make(model)
    b.model.load_state_dict(a.model.state_dict())
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as through torch.save: no shared optimiser tensors
    assert b.hook(CriticHook).rewards.state_dict() == a.hook(CriticHook).rewards.state_dict()
    for x, y in zip(a.hook(CriticHook).net.parameters(), b.hook(CriticHook).net.parameters(), strict=True):
        assert torch.equal(x, y)
    ma = a.update(a.score(exp), torch.Generator().manual_seed(1))
    mb = b.update(b.score(exp), torch.Generator().manual_seed(1))
    assert ma["value/loss"] == mb["value/loss"]
    for x, y in zip(a.hook(CriticHook).net.parameters(), b.hook(CriticHook).net.parameters(), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="has critic state"):
        make(model, "ppo").load_state_dict({**a.state_dict(), "objective_state": None})


def test_scored_advantages_use_the_last_real_token(setup: tuple) -> None:
    model, exp = setup[0], cut_rows(setup[1])
    learner = make(model)
    s = learner.score(exp)
    # independent: HF hidden_states[-1] at each row's last real token (prompt width + length - 1)
    input_ids, attention, start = exp.rollout.model_inputs()
    with torch.no_grad():
        h = learner.model(input_ids=input_ids, attention_mask=attention, output_hidden_states=True).hidden_states[-1]
        h_last = h[torch.arange(exp.size), start + exp.rollout.lengths - 1]
        v = learner.hook(CriticHook).net(h_last)
    assert exp.rollout.lengths.unique().numel() > 1  # rows of different lengths
    torch.testing.assert_close(s.old_value, v, atol=1e-5, rtol=1e-5)
    moments = learner.hook(CriticHook).rewards
    target = (exp.rewards - moments.mean) / (math.sqrt(moments.var) + 1e-8)
    torch.testing.assert_close(s.value_target, target)
    expected = critic_advantages(target, v)
    torch.testing.assert_close(s.adv, expected[:, None] * s.mask, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("coef", [0.5, 2.0])
def test_the_loss_adds_value_coef_times_the_value_loss_once(setup: tuple, coef: float) -> None:
    model, exp = setup
    sets = ("algo.minibatches=1", "algo.micro_batches=2")
    a = make(model, "safe", *sets, f"algo.critic.value_coef={coef}")
    b = make(model, "safe", *sets, "algo.critic.value_coef=0")
    sa, sb = a.score(exp), b.score(exp)
    rows = torch.arange(exp.size)
    ma, mb = a._optimizer_step(sa, rows), b._optimizer_step(sb, rows)
    # at the step's start V = V_old, so V_clip = V and L_V = 0.5 (2 Huber_0.5(V, R)) / B = mean Huber_0.5(V_old, R)
    huber = torch.nn.functional.huber_loss(sa.old_value, sa.value_target, delta=0.5)
    assert ma["value/loss"] == pytest.approx(coef * float(huber), rel=1e-4)
    assert ma["loss"] - mb["loss"] == pytest.approx(ma["value/loss"], rel=1e-4)  # value_coef * L_V, not coef^2 L_V
