"""The K-step sampler gives [B, K] step log-probs that the objective registry takes as tokens."""

from __future__ import annotations

import pytest
import torch

from ratiolab.flow import FlowPolicy, gaussian_step_logp, step_inputs
from ratiolab.objectives import compute


def _setup(b: int = 6, k: int = 4) -> tuple[FlowPolicy, object, torch.Tensor]:
    torch.manual_seed(0)
    policy = FlowPolicy(2, 3, steps=k, sigma=0.5, hidden=16)
    traj = policy.sample(torch.tensor([0, 1, 2, 0, 1, 2][:b]), generator=torch.Generator().manual_seed(1))
    return policy, traj, torch.linspace(-1, 1, b)


def test_layout_and_recomputed_logp() -> None:
    policy, traj, _ = _setup()
    assert traj.logp.shape == (6, 4) and traj.means.shape == (6, 4, 2) and traj.xs.shape == (6, 5, 2)
    logp, means = policy.log_prob(traj)
    assert torch.allclose(logp, traj.logp, atol=1e-6) and torch.allclose(means, traj.means, atol=1e-6)
    s = 0.5 * (1 / 4) ** 0.5
    assert torch.allclose(traj.logp, gaussian_step_logp(traj.xs[:, 1:], traj.means, s))
    assert logp.requires_grad


def _grads(policy: FlowPolicy, loss: torch.Tensor) -> torch.Tensor:
    policy.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])


@pytest.mark.parametrize("name", ["ppo", "grpo_guard"])
def test_registry_objectives_on_step_tokens(name: str) -> None:
    """On-policy, PPO and GRPO-Guard (without reweighting) have the REINFORCE gradient -mean(A s log-ratio')."""
    policy, traj, adv = _setup()
    logp, means = policy.log_prob(traj)
    extra = {"mean": means, "mean_old": traj.means, "step_std": traj.step_std.expand_as(logp),
             "grad_reweight": False} if name == "grpo_guard" else {}
    out = compute(name, step_inputs(traj, logp, adv), **extra)
    assert out.loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6)  # r = 1 on every step
    g = _grads(policy, out.loss)
    logp2, _ = policy.log_prob(traj)
    # GRPO-Guard, Eq. 8: d log r_hat = s (d log r + d b), b = mean((mu - sg mu_old)^2) / (2 s^2), db = 0 on-policy
    scale = traj.step_std if name == "grpo_guard" else 1.0
    ref = -(adv[:, None] * scale * logp2).mean()
    assert torch.allclose(g, _grads(policy, ref), atol=1e-6)


def test_step_inputs_bad_adv() -> None:
    _, traj, _ = _setup()
    with pytest.raises(ValueError, match="adv must be"):
        step_inputs(traj, traj.logp, torch.zeros(6, 4))


def test_step_weights_by_hand() -> None:
    policy = FlowPolicy(2, 3, steps=5)
    assert torch.allclose(policy.step_weights("flow_grpo"), torch.full((5,), 5.0, dtype=torch.float32))
    # noise levels 1, 0.8, 0.6, 0.4, 0.2: (1 + 0.49 (1 - u) / (2 u)) / 0.2
    expected = torch.tensor([(1 + 0.49 * (1 - u) / (2 * u)) / 0.2 for u in (1.0, 0.8, 0.6, 0.4, 0.2)])
    assert torch.allclose(policy.step_weights("dance_grpo"), expected)
    assert policy.step_weights("dance_grpo")[1].item() == pytest.approx(5.30625)


def test_per_step_delta_reaches_the_loss() -> None:
    policy, traj, adv = _setup(k=4)
    logp, means = policy.log_prob(traj)
    kw = {"mean": means, "mean_old": traj.means, "step_std": traj.step_std.expand_as(logp)}
    delta = policy.step_weights("dance_grpo")
    out = compute("grpo_guard", step_inputs(traj, logp, adv), **kw, delta=delta.expand_as(logp))
    assert out.loss.item() == pytest.approx(-(adv[:, None] * delta).mean().item(), abs=1e-5)
