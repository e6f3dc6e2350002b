"""Unit references for the classic-control pieces: PROPS, PDPPO, co-scaling, policies, inventory env."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from ratiolab.gym import GymTrainConfig, PPOConfig, preset, scale_envs
from ratiolab.gym.algos.pdppo import pdppo_advantage
from ratiolab.gym.algos.props import props_loss
from ratiolab.gym.inventory import InventoryEnv
from ratiolab.gym.normalize import RunningMeanStd
from ratiolab.gym.policies import Actor
from ratiolab.gym.pqn import epsilon
from ratiolab.objectives import compute
from ratiolab.types import PolicyLossInputs


def test_props_worked_example() -> None:
    z = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    actions = torch.tensor([0, 0, 0, 1])
    theta = torch.full((4,), math.log(0.5), dtype=torch.float64)
    loss = props_loss(z.log_softmax(-1)[actions], theta, clip=0.3)
    (g,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(g, torch.tensor([0.25, -0.25], dtype=torch.float64))
    z1 = z.detach() - g
    pi = z1.softmax(-1)
    torch.testing.assert_close(pi, torch.tensor([0.3775, 0.6225], dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        pi / 0.5, torch.tensor([0.7551, 1.2449], dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_props_clip_stops_the_push() -> None:
    theta = torch.zeros(1, dtype=torch.float64)
    low = torch.tensor([math.log(0.6)], dtype=torch.float64, requires_grad=True)  # r = 0.6 < 1 - 0.3
    (g,) = torch.autograd.grad(props_loss(low, theta, 0.3), low)
    assert float(g) == 0.0


def test_pdppo_worked_example() -> None:
    # A^pre = R - V = 5.0 - 4.0 = 1.0 (passed as the GAE advantage), A^x = R^x - V^x = 4.5 - 4.2 = 0.3: A = 1.0
    adv = float(pdppo_advantage(torch.tensor([4.5]), torch.tensor([4.2]), torch.tensor([1.0]))[0])
    assert adv == pytest.approx(1.0)
    inp = PolicyLossInputs(
        logp=torch.tensor([[math.log(1.3)]], dtype=torch.float64),
        prox_logp=torch.zeros(1, 1, dtype=torch.float64),
        adv=torch.tensor([[adv]], dtype=torch.float64),
        mask=torch.ones(1, 1, dtype=torch.float64),
    )
    out = compute("ppo", inp, clip_low=0.21, clip_high=0.21)
    assert float(out.loss) == pytest.approx(-1.21)


def test_scale_envs_keeps_minibatch_size() -> None:
    base = GymTrainConfig(total_steps=2**27, ppo=PPOConfig(num_envs=1024, num_steps=128, num_minibatches=8))
    big = scale_envs(base, 1_048_576)
    assert big.ppo.num_minibatches == 8 * 1_048_576 // 1024 == 8192
    assert big.ppo.minibatch_size == base.ppo.minibatch_size == 16_384
    assert (big.ppo.learning_rate, big.ppo.update_epochs, big.ppo.clip_coef, big.ppo.num_steps) == (
        base.ppo.learning_rate,
        base.ppo.update_epochs,
        base.ppo.clip_coef,
        base.ppo.num_steps,
    )
    with pytest.raises(ValueError, match="num_envs"):
        scale_envs(base, 100)
    with pytest.raises(ValueError, match="below one update"):  # 2**21 envs x 128 steps > total_steps = 2**27
        scale_envs(base, 2 * 1_048_576)


@pytest.mark.parametrize("continuous", [False, True])
def test_actor_distribution_matches_torch(continuous: bool) -> None:
    torch.manual_seed(0)
    actor = Actor(3, 4, continuous, [8], "tanh")
    if actor.log_std is not None:
        actor.log_std.data = torch.tensor([0.1, -0.3, 0.2, 0.0])
    obs = torch.randn(5, 3)
    params, old = actor(obs), actor(obs + 0.5)
    action, logp = actor.sample(params)
    if continuous:
        mean, log_std = params.chunk(2, -1)
        d, d_old = Normal(mean, log_std.exp()), Normal(old.chunk(2, -1)[0], old.chunk(2, -1)[1].exp())
        ref_logp, ref_ent, ref_kl = (
            d.log_prob(action).sum(-1),
            d.entropy().sum(-1),
            kl_divergence(d, d_old).sum(-1),
        )
    else:
        d, d_old = Categorical(logits=params), Categorical(logits=old)
        ref_logp, ref_ent, ref_kl = d.log_prob(action), d.entropy(), kl_divergence(d, d_old)
    torch.testing.assert_close(logp, ref_logp)
    torch.testing.assert_close(actor.entropy(params), ref_ent)
    torch.testing.assert_close(actor.kl(params, old), ref_kl)


def test_inventory_post_decision_state_and_cost() -> None:
    env = InventoryEnv(capacity=20, max_order=10, demand_mean=4.0)
    obs, _ = env.reset(seed=3)
    level = round(float(obs[0]) * 20)
    obs2, reward, term, trunc, info = env.step(np.int64(6))
    post = round(float(info["post_decision_obs"][0]) * 20)
    assert post == level + 6
    new = round(float(obs2[0]) * 20)
    expect = -(2.0 + 6 * 1.0 + 0.5 * max(new, 0) + 3.0 * max(-new, 0))
    assert reward == pytest.approx(expect)
    assert not term and not trunc
    with pytest.raises(ValueError, match="action"):
        env.step(np.int64(11))


def test_running_mean_std_matches_numpy() -> None:
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(300, 2))
    rms = RunningMeanStd((2,))
    for chunk in np.split(x, 6):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, x.var(0), rtol=1e-4)


def test_epsilon_schedule_and_presets() -> None:
    assert epsilon(0, 100, 1.0, 0.05, 0.5) == 1.0
    assert epsilon(25, 100, 1.0, 0.05, 0.5) == pytest.approx(0.525)
    assert epsilon(90, 100, 1.0, 0.05, 0.5) == pytest.approx(0.05)
    assert preset("cartpole-pqn").pqn.num_envs == 16
    with pytest.raises(ValueError, match="cartpole-ppo-zoo"):
        preset("nope")
