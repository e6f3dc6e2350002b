"""The on-policy update against a PPO step written out by hand, the registry's direct call against
``objectives.compute``, and the flat parameter tensor."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ratiolab import objectives
from ratiolab.gym import GymTrainConfig, PPOConfig
from ratiolab.gym.onpolicy import OnPolicy, RegistryObjective
from ratiolab.gym.policies import Actor, flatten_parameters, mlp
from ratiolab.gym.train import _build
from ratiolab.types import PolicyLossInputs

T, CLIP, LR, ENT, VF, MAX_NORM = 8, 0.2, 0.01, 0.01, 0.5, 0.5


def _ppo(**kw: object) -> OnPolicy:
    settings: dict[str, object] = {"num_envs": 1, "num_steps": T, "num_minibatches": 1, "update_epochs": 1,
                                   "learning_rate": LR, "anneal_lr": False, "ent_coef": ENT, "vf_coef": VF,
                                   "max_grad_norm": MAX_NORM, "clip_vloss": True, "hidden": [8], **kw}
    ppo = PPOConfig(**settings)  # type: ignore[arg-type]
    algo = _build(GymTrainConfig(total_steps=T, ppo=ppo))
    algo.runner.envs.close()
    assert isinstance(algo, OnPolicy)
    return algo


def _buffer(algo: OnPolicy) -> dict[str, torch.Tensor]:
    """A ``[T, 1]`` rollout whose old log-probs sit 0.4 (std) off the actor's, so both clip sides bind."""
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(T, 1, 4, generator=g)
    act = torch.randint(0, 2, (T, 1), generator=g)
    with torch.no_grad():
        logp = algo.actor.log_prob(algo.actor(obs[:, 0]), act[:, 0])[:, None]
        values = algo.critic(obs[:, 0])[:, :1]
    return {"obs": obs, "act": act.float(), "logp": logp + 0.4 * torch.randn(T, 1, generator=g),
            "adv": torch.randn(T, 1, generator=g), "values": values + 0.5 * torch.randn(T, 1, generator=g),
            "returns": torch.randn(T, 1, generator=g), "rewards": torch.zeros(T, 1), "terminated": torch.zeros(T, 1)}


def _hand_ppo_loss(
    actor: torch.nn.Module, critic: torch.nn.Module, buf: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip (arXiv 1707.06347) with CleanRL's pieces: normalised advantage, entropy bonus, clipped value loss."""
    obs, act, logp_old = buf["obs"][:, 0], buf["act"][:, 0].long(), buf["logp"][:, 0]
    adv, v_old, ret = buf["adv"][:, 0], buf["values"][:, 0], buf["returns"][:, 0]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    logits = actor(obs).log_softmax(-1)
    r = (logits.gather(1, act[:, None])[:, 0] - logp_old).exp()
    unclipped, clipped = -adv * r, -adv * r.clamp(1 - CLIP, 1 + CLIP)
    entropy = -(logits.exp() * logits).sum(-1)
    pg = (torch.maximum(unclipped, clipped) - ENT * entropy).mean()
    v = critic(obs)[:, 0]
    v_clipped = v_old + (v - v_old).clamp(-CLIP, CLIP)
    vl = 0.5 * torch.maximum((v - ret).square(), (v_clipped - ret).square()).mean()
    stats = {"loss/policy": pg, "loss/value": vl, "entropy": entropy.mean(),
             "clip_frac": (clipped > unclipped).float().mean()}
    return pg + VF * vl, {k: s.detach() for k, s in stats.items()}


@pytest.mark.parametrize("epochs", [1, 3])
def test_update_equals_a_hand_written_ppo_step(epochs: int) -> None:
    """``epochs`` full-batch Adam steps: the first through ``objectives.compute``, the others through the direct
    registry call, against the loss and Adam written out here (betas 0.9, 0.999, eps 1e-5, norm clipping)."""
    algo = _ppo(update_epochs=epochs)
    buf = _buffer(algo)
    actor, critic = copy.deepcopy(algo.actor), copy.deepcopy(algo.critic)
    params = [*actor.parameters(), *critic.parameters()]
    m = [torch.zeros_like(p) for p in params]
    v2 = [torch.zeros_like(p) for p in params]
    rows = []
    for k in range(1, epochs + 1):
        loss, stats = _hand_ppo_loss(actor, critic, buf)
        rows.append(stats)
        grads = torch.autograd.grad(loss, params)
        scale = min(1.0, MAX_NORM / (math.sqrt(sum(float(g.square().sum()) for g in grads)) + 1e-6))
        with torch.no_grad():
            for p, g, m_i, v_i in zip(params, grads, m, v2, strict=True):
                m_i.mul_(0.9).add_(0.1 * scale * g)
                v_i.mul_(0.999).add_(0.001 * (scale * g).square())
                p.sub_(LR * (m_i / (1 - 0.9**k)) / ((v_i / (1 - 0.999**k)).sqrt() + 1e-5))
    assert 0 < float(rows[0]["clip_frac"]) < 1  # both branches of the clip are exercised

    metrics = algo._learn(buf, CLIP)
    got = [*algo.actor.parameters(), *algo.critic.parameters()]
    for p, want in zip(got, params, strict=True):
        torch.testing.assert_close(p.detach(), want.detach(), rtol=1e-5, atol=1e-6)
    for key in rows[0]:  # the means over the minibatches
        assert metrics[key] == pytest.approx(sum(float(r[key]) for r in rows) / epochs, rel=1e-5, abs=1e-7), key


def _inputs(b: int = 16) -> PolicyLossInputs:
    g = torch.Generator().manual_seed(0)
    logp = (-1.0 + 0.3 * torch.randn(b, 1, generator=g)).requires_grad_()
    return PolicyLossInputs(logp=logp, prox_logp=-1.0 + 0.3 * torch.randn(b, 1, generator=g),
                            adv=torch.randn(b, 1, generator=g), mask=torch.ones(b, 1),
                            entropy=torch.rand(b, 1, generator=g))


def _run(fn: object, inputs: PolicyLossInputs) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)  # objectives that draw tokens draw the same ones
    loss, metrics = fn(inputs)  # type: ignore[operator]
    (grad,) = torch.autograd.grad(loss, inputs.logp)
    return loss.detach(), grad, metrics


def test_direct_registry_call_equals_compute_for_every_objective() -> None:
    """Every objective that runs on a plain gym batch: the learner's direct call gives ``compute``'s loss, gradient
    and the metrics it reports (stateful objectives, whose second call differs from their first, are left out)."""
    inputs = _inputs()
    checked = []
    for name in objectives.names():
        def ref(x: PolicyLossInputs, name: str = name) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            out = objectives.compute(name, x, entropy_coef=ENT)
            return out.loss, out.metrics
        try:
            first = _run(ref, inputs)
        except (ValueError, TypeError):
            continue  # needs inputs a gym batch does not have (groups, scores, a reference policy, ...)
        again = _run(ref, inputs)
        if not torch.equal(first[0], again[0]):
            continue
        obj = RegistryObjective(name, {"entropy_coef": ENT})
        obj(inputs, validate=True)
        loss, grad, metrics = _run(lambda x, obj=obj: obj(x, validate=False), inputs)
        torch.testing.assert_close(loss, first[0], rtol=1e-6, atol=1e-7, msg=name)
        torch.testing.assert_close(grad, first[1], rtol=1e-6, atol=1e-7, msg=name)
        for k, v in metrics.items():
            torch.testing.assert_close(v.double(), first[2][k].double(), rtol=1e-6, atol=1e-7, msg=f"{name}: {k}")
        assert {"approx_kl", "entropy"} <= metrics.keys()
        checked.append(name)
    assert {"ppo", "cispo", "bpo", "mdpo", "gspo"} <= set(checked), checked


def test_flat_parameters_share_storage_and_gradient() -> None:
    torch.manual_seed(0)
    actor, critic = Actor(4, 2, False, [16, 16], "tanh"), mlp(4, [16, 16], 1)
    before = {k: v.clone() for k, v in actor.state_dict().items()}
    flat = flatten_parameters([actor, critic])
    assert flat.numel() == sum(q.numel() for m in (actor, critic) for q in m.parameters())
    assert all(torch.equal(v, before[k]) for k, v in actor.state_dict().items())
    obs = torch.randn(8, 4)
    (actor(obs).logsumexp(-1) + critic(obs)[:, 0]).square().mean().backward()
    assert flat.grad is not None
    per_param = [q.grad.flatten() for m in (actor, critic) for q in m.parameters() if q.grad is not None]
    torch.testing.assert_close(flat.grad, torch.cat(per_param))
    opt = torch.optim.Adam([flat], lr=0.1)
    opt.step()  # updating the flat tensor moves the module weights
    assert not torch.equal(actor.state_dict()["net.0.weight"], before["net.0.weight"])
    actor.load_state_dict(before)  # and loading module weights writes into the flat tensor
    torch.testing.assert_close(flat[: before["net.0.weight"].numel()], before["net.0.weight"].flatten())


def test_mlp_matches_sequential() -> None:
    torch.manual_seed(0)
    net = mlp(4, [8, 8], 3, "relu", layer_norm=True)
    x = torch.randn(5, 4)
    torch.testing.assert_close(net(x), torch.nn.Sequential(*net)(x))


@pytest.mark.slow
def test_compiled_minibatch_loss_matches_eager() -> None:
    algo = _ppo(compile=True)
    flat = {k: v[:, 0] for k, v in _buffer(algo).items()}
    flat["act"] = flat["act"].long()
    flat["mask"] = torch.ones(T, 1)
    algo.minibatch_loss(flat, CLIP, True, validate=True)
    loss, stats = algo.minibatch_loss(flat, CLIP, True, validate=False)
    c_loss, c_stats = algo.fast_loss(flat, CLIP, True, validate=False)
    torch.testing.assert_close(c_loss, loss, rtol=1e-5, atol=1e-6)
    for k, v in stats.items():
        torch.testing.assert_close(c_stats[k], v, rtol=1e-5, atol=1e-6)


def test_compile_needs_an_on_policy_algorithm() -> None:
    with pytest.raises(ValueError, match=r"ppo\.compile applies to the on-policy"):
        GymTrainConfig(algo="pqn", ppo=PPOConfig(compile=True))
