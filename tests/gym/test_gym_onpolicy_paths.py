"""The algorithm-specific hooks of gym/algos/*.py on hand-computed numbers (PDPPO, PROPS, MDPO, BPO, GRPO-Guard).

Each test drives the learner's own method (not a re-computation in the test) on a policy whose
output is fixed by hand: every weight zero, the head bias set, so that the numbers can be derived.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from ratiolab.gym import GymTrainConfig, PPOConfig
from ratiolab.gym.algos.pdppo import pdppo_advantage
from ratiolab.gym.algos.props import PROPS
from ratiolab.gym.config import PROPSConfig
from ratiolab.gym.onpolicy import OnPolicy
from ratiolab.gym.train import _build

# Pendulum (1-D action). The actor's mean is 0.3 everywhere (log-std 0); the old policy is N(0, 1).
ACT = torch.tensor([[0.5], [-1.0]])
ADV = torch.tensor([1.0, -2.0])
# log r = log N(a; 0.3, 1) - log N(a; 0, 1) = (a^2 - (a - 0.3)^2) / 2 = 0.3 a - 0.045
R = [math.exp(0.105), math.exp(-0.345)]  # 1.1107106, 0.7082204


@pytest.fixture
def make() -> Iterator:
    built: list[OnPolicy] = []

    def _make(algo: str, env_id: str = "Pendulum-v1", ppo_kw: dict | None = None, **kw: object) -> OnPolicy:
        ppo = PPOConfig(num_envs=1, num_steps=2, num_minibatches=1, update_epochs=1, ent_coef=0.0, vf_coef=0.0,
                        **(ppo_kw or {}))
        cfg = GymTrainConfig(env_id=env_id, algo=algo, total_steps=4, ppo=ppo, **kw)  # type: ignore[arg-type]
        algo_obj = _build(cfg)
        assert isinstance(algo_obj, OnPolicy)
        built.append(algo_obj)
        return algo_obj

    yield _make
    for a in built:
        a.runner.envs.close()


def _set_head(net: torch.nn.Module, bias: list[float]) -> None:
    """Every parameter of ``net`` zero except the last layer's bias."""
    with torch.no_grad():
        for q in net.parameters():
            q.zero_()
        net[-1].bias.copy_(torch.tensor(bias))  # type: ignore[index]


def _batch(returns: list[float], std: float = 1.0, old: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """A minibatch as the learner's minibatch loss takes it (``old``: the iteration-start distribution parameters)."""
    logp_old = -0.5 * (ACT[:, 0] / std).square() - math.log(std) - 0.5 * math.log(2 * math.pi)  # N(a; 0, std)
    mb = {"obs": torch.zeros(2, 3), "act": ACT, "logp": logp_old, "returns": torch.tensor(returns),
          "values": torch.zeros(2), "adv": ADV, "mask": torch.ones(2, 1)}
    if old is not None:
        mb["old_params"] = old
    return mb


def _stats(algo: OnPolicy, mb: dict[str, torch.Tensor]) -> dict[str, float]:
    """The minibatch metrics through ``objectives.compute`` (validate) and through the direct registry call; both
    must agree."""
    _, checked = algo.minibatch_loss(mb, 0.2, norm_adv=False, validate=True)
    _, direct = algo.minibatch_loss(mb, 0.2, norm_adv=False, validate=False)
    for k in checked:
        assert float(direct[k]) == pytest.approx(float(checked[k]), abs=1e-6), k
    return {k: float(v) for k, v in checked.items()}


def test_pdppo_advantage_takes_the_larger_advantage() -> None:
    # R = 5, V(s) = 4: A_pre = 1.0. V^x = 4.2: A^x = 0.8 -> 1.0 (pre wins); V^x = 3.5: A^x = 1.5 -> 1.5 (post wins).
    ret, adv = torch.tensor([5.0, 5.0]), torch.tensor([1.0, 1.0])
    out = pdppo_advantage(ret, torch.tensor([4.2, 3.5]), adv)
    torch.testing.assert_close(out, torch.tensor([1.0, 1.5]))


def test_props_resets_the_behaviour_to_theta_then_takes_one_adam_step(make) -> None:  # type: ignore[no-untyped-def]
    # CartPole; theta has zero weights: logits (0, 0) in every state. Buffer actions (0, 0, 0, 1), eps_P = 0.3:
    # dL/dz = (+0.25, -0.25) (the PROPS worked example), only the head bias has a gradient; Adam's first step
    # is lr * sign(g), so with lr = 0.25 the behaviour's head bias is (-0.25, +0.25) and all else stays 0.
    algo = make("props", "CartPole-v1", props=PROPSConfig(learning_rate=0.25, epochs=1, num_minibatches=1))
    assert isinstance(algo, PROPS)
    _set_head(algo.actor.net, [0.0, 0.0])
    behaviour = algo.extra["behaviour"]
    assert any(float(q.detach().abs().sum()) > 0 for q in behaviour.parameters())  # still the random initial copy
    algo._adapt_behaviour(torch.randn(4, 1, 4), torch.tensor([[0], [0], [0], [1]]))
    head = behaviour.net[-1].bias  # type: ignore[index]
    torch.testing.assert_close(head.detach(), torch.tensor([-0.25, 0.25]), atol=1e-6, rtol=0)
    others = [q for name, q in behaviour.named_parameters() if name != f"net.{len(behaviour.net) - 1}.bias"]
    assert all(float(q.detach().abs().max()) == 0.0 for q in others)
    pi = torch.tensor([-0.25, 0.25]).softmax(-1)
    torch.testing.assert_close(pi, torch.tensor([0.3775, 0.6225]), atol=1e-4, rtol=0)


def test_mdpo_loss_carries_the_exact_kl_to_the_iteration_start_policy(make) -> None:  # type: ignore[no-untyped-def]
    # KL(N(0.3, 1) || N(0, 1)) = 0.3^2 / 2 = 0.045; iteration k = 0 of K = 2: t_k = 1 + 1/K = 1.5.
    # loss = mean(-r A) + KL / t_k = (-1.1107106 * 1 + 0.7082204 * 2) / 2 + 0.045 / 1.5 = 0.1528650 + 0.03
    algo = make("mdpo")
    _set_head(algo.actor.net, [0.3])
    old = torch.zeros(2, 2)  # (mean, log_std) of pi_theta_k
    stats = _stats(algo, _batch([0.0, 0.0], old=old))
    expected = (-R[0] * 1.0 + R[1] * 2.0) / 2 + 0.045 / 1.5
    assert stats["loss/policy"] == pytest.approx(expected, abs=1e-6)  # 0.182865


def test_bpo_target_uses_the_median_head(make) -> None:  # type: ignore[no-untyped-def]
    # Median head U = 0.5 everywhere; returns R = (0.2, 1.0): Q - U = (-0.3, +0.5), so with lambda = 0.001 the
    # targets are 1 - eps = 0.7 and 1 + eps = 1.3 (eps = 0.3), the opposite of the signs of A = (1, -2).
    # loss = mean |(r - target) A| = (|1.1107106 - 0.7| * 1 + |0.7082204 - 1.3| * 2) / 2 = 0.7971350
    algo = make("bpo")
    _set_head(algo.actor.net, [0.3])
    _set_head(algo.critic, [0.0, 0.5])
    stats = _stats(algo, _batch([0.2, 1.0]))
    expected = (abs(R[0] - 0.7) * 1.0 + abs(R[1] - 1.3) * 2.0) / 2
    assert stats["loss/policy"] == pytest.approx(expected, abs=1e-6)


def test_grpo_guard_runs_on_the_fixed_std_gaussian_actor(make) -> None:  # type: ignore[no-untyped-def]
    # std s = 0.5 fixed, old mean 0, current mean 0.1: eps = a / s = (1, -2), log r_hat = eps * d_mu = (0.1, -0.2)
    # (the raw log-ratio would be (a^2 - (a - 0.1)^2) / (2 s^2) = (0.18, -0.42)). Clip 0.2, A = (1, -2):
    # l = (-1 * e^0.1, max(2 e^-0.2, 2 * 0.8)) = (-1.1051709, 1.6374615), loss = mean = 0.2661453.
    algo = make("ppo", ppo_kw={"objective": "grpo_guard", "action_std": 0.5})
    assert "actor.log_std" not in [n for n, _ in algo.actor.named_parameters()]
    _set_head(algo.actor.net, [0.1])
    old = torch.tensor([[0.0, math.log(0.5)]] * 2)
    stats = _stats(algo, _batch([0.0, 0.0], std=0.5, old=old))
    expected = (-math.exp(0.1) + max(2 * math.exp(-0.2), 2 * 0.8)) / 2
    assert stats["loss/policy"] == pytest.approx(expected, abs=1e-6)  # 0.266145
    assert stats["clip_frac"] == 0.0
