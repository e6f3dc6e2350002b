"""Old-logit strategies in isolation: EWMA arithmetic and reset (arXiv 2110.00641, 2605.12070), A-3PO alpha and the
current-forward interpolation (arXiv 2512.06547), snapshot release."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from ratiolab.config.train import AlgoConfig
from ratiolab.correction.old_logits import (
    Ewma,
    LinearProx,
    LogLinear,
    Recompute,
    Snapshot,
    interpolated_prox,
    make_strategy,
    record,
)
from ratiolab.engines import Rollout
from ratiolab.learner.lm import LMLearner, Scored
from ratiolab.objectives import compute
from ratiolab.policies import build_policy
from ratiolab.rollout import Experience
from ratiolab.types import PolicyLossInputs


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_policy("tiny", seed=0)[0]


def const_weights(model: torch.nn.Module, value: float) -> dict[str, torch.Tensor]:
    return {k: torch.full_like(v, value) for k, v in model.state_dict().items()}


def ewma_value(e: Ewma) -> float:
    k = next(iter(e.num))
    return float(e.num[k].flatten()[0] / e.den)


def test_ewma_bias_corrected_worked_examples(model: torch.nn.Module) -> None:
    model.load_state_dict(const_weights(model, 0.0))
    half = Ewma(model, 1.0, max_staleness=2, beta=0.5)
    values = []
    for theta in (1.0, 2.0):
        half.on_publish(const_weights(model, theta), 0)
        values.append(ewma_value(half))
    assert values == pytest.approx([0.666667, 1.428571], abs=1e-6)
    revised = Ewma(model, 1.0, max_staleness=4)  # beta = W / (W + 2) = 2/3
    assert revised.beta == pytest.approx(2 / 3)
    values = [ewma_value(revised)]
    for theta in (1.0, 2.0, 3.0):
        revised.on_publish(const_weights(model, theta), 0)
        values.append(ewma_value(revised))
    assert values == pytest.approx([0.0, 0.6, 1.263158, 1.984615], abs=1e-6)


def test_ewma_reset_and_zero_window_is_recompute(model: torch.nn.Module) -> None:
    e = Ewma(model, 1.0, max_staleness=4)
    e.on_publish(const_weights(model, 5.0), 1)
    out = e.after_update({"clip_frac": 0.2, "correction/mask_token_frac": 0.05}, const_weights(model, 7.0))
    assert out["ewma/active_frac"] == pytest.approx(0.75) and e.resets == 1
    assert ewma_value(e) == 7.0 and e.den == 1.0  # reset: theta_prox = current weights, den = 1
    zero = Ewma(model, 1.0, max_staleness=0)
    zero.on_publish(const_weights(model, 3.0), 1)
    assert zero.beta == 0.0 and ewma_value(zero) == 3.0  # W = 0: the proxy is the current policy
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        Ewma(model, 1.0, 2, beta=1.0)
    with pytest.raises(ValueError, match=r"reset_tau must be in \[0, 1\] \(0: never reset\)"):
        Ewma(model, 1.0, 2, reset_tau=1.5)


def test_ewma_reset_reads_the_exact_active_fraction(model: torch.nn.Module, caplog: pytest.LogCaptureFixture) -> None:
    # one token of three both clipped and masked: clip_frac = mask_frac = 1/3, active = 2/3 as the objective reports
    # it (1 - clip_frac - mask_frac = 1/3 < tau would count that token twice and reset)
    e = Ewma(model, 1.0, max_staleness=4, reset_tau=0.5)
    metrics = {"clip_frac": 1 / 3, "correction/mask_token_frac": 1 / 3, "active_frac": 2 / 3}
    assert e.after_update(metrics, const_weights(model, 1.0))["ewma/active_frac"] == pytest.approx(2 / 3)
    assert e.resets == 0 and not caplog.records
    # an objective without active_frac and a mask correction: the lower bound, said once
    with caplog.at_level(logging.WARNING, "ratiolab.old_logits"):
        out = e.after_update({"clip_frac": 0.3, "correction/mask_token_frac": 0.3}, const_weights(model, 1.0))
    assert out["ewma/active_frac"] == pytest.approx(0.4) and e.resets == 1 and "lower bound" in caplog.text
    never = Ewma(model, 1.0, max_staleness=4, reset_tau=0.0)  # the original PPO-EWMA: no reset
    never.after_update({"active_frac": 0.0}, const_weights(model, 1.0))
    assert never.resets == 0


def toy_experience(versions: list[list[int]], behav: list[list[float]]) -> Experience:
    v = torch.tensor(versions)
    b = len(versions)
    ro = Rollout(prompts=[""] * b, prompt_ids=torch.ones(b, 1, dtype=torch.long), prompt_mask=torch.ones(b, 1),
                 tokens=torch.ones_like(v), mask=(v >= 0).float(), behav_logp=torch.tensor(behav), version=v,
                 finished=torch.ones(b, dtype=torch.bool), lengths=(v >= 0).sum(1), texts=[""] * b)
    return Experience(ro, [], torch.zeros(b), torch.zeros(b, dtype=torch.long), 0)


def test_loglinear_alpha_from_version_tags(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = toy_experience([[5, 4, 2]], [[-1.0, -1.0, -1.0]])
    strat = LogLinear(model, 1.0, 3)
    monkeypatch.setattr(strat, "_forward", lambda m, e: torch.tensor([[-2.0, -2.0, -2.0]]))
    prox = strat.prox_logp(exp, learner_version=5)
    # staleness 0, 1, 3 -> alpha 0, 1/2, 3/4 -> prox = -1 + alpha * (-2 + 1)
    assert prox[0].tolist() == pytest.approx([-1.0, -1.5, -1.75])


LOGP, ADV, BEHAV = [-1.0, -0.5, -2.0], [1.0, -1.0, 0.5], [-1.3, -0.35, -1.45]


def test_loglinear_current_forward_worked_example() -> None:
    # alpha = 0.5: prox = mu + 0.5 (logp - mu) = [-1.15, -0.425, -1.725]; w_disc r_stale = pi/mu = [1.349859, 0.860708,
    # 0.576950]; band on pi/mu = [0.8^2, 1.2^2] = [0.64, 1.44] clips nothing, so the loss is the unclipped
    # -A pi/mu token-mean (-1.349859 + 0.860708 - 0.288475) / 3 = -0.259209 with dL/dlogp = -A (pi/mu) / 3
    lp = torch.tensor([LOGP], dtype=torch.float64, requires_grad=True)
    mu = torch.tensor([BEHAV], dtype=torch.float64)
    prox = interpolated_prox(lp, mu, torch.full_like(mu, 0.5))
    assert not prox.requires_grad and prox[0].tolist() == pytest.approx([-1.15, -0.425, -1.725], abs=1e-12)
    out = compute("ppo", PolicyLossInputs(logp=lp, prox_logp=prox, adv=torch.tensor([ADV], dtype=torch.float64),
                                          mask=torch.ones_like(mu), behav_logp=mu))
    (g,) = torch.autograd.grad(out.loss, lp)
    assert out.loss.item() == pytest.approx(-0.259209, abs=1e-6) and out.metrics["clip_frac"] == 0.0
    assert g[0].tolist() == pytest.approx([-0.449953, 0.286903, -0.096158], abs=1e-6)
    # linear_prox, alpha = 0.5: pi_prox = (pi + mu) / 2 = ([0.367879, 0.606531, 0.135335] + [0.272532, 0.704688,
    # 0.234570]) / 2 = [0.320206, 0.655609, 0.184953]
    lin = interpolated_prox(lp, mu, torch.full_like(mu, 0.5), "prob")
    assert lin[0].exp().tolist() == pytest.approx([0.320206, 0.655609, 0.184953], abs=1e-6)
    with pytest.raises(ValueError, match="space must be 'log' or 'prob'"):
        interpolated_prox(lp, mu, mu, "geometric")


def moved_bounds(alpha: torch.Tensor, eps: float, space: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token bounds on pi/mu equivalent to clipping r_stale to [1 - eps, 1 + eps] (pi_prox from sg(pi))."""
    if space == "log":  # r_stale = (pi/mu)^(1 - alpha)
        return (1 - eps) ** (1 / (1 - alpha)), (1 + eps) ** (1 / (1 - alpha))
    # r_stale = rho / (alpha rho + 1 - alpha), increasing in rho and below 1/alpha
    lo = (1 - eps) * (1 - alpha) / (1 - alpha * (1 - eps))
    hi = torch.where(alpha * (1 + eps) < 1, (1 + eps) * (1 - alpha) / (1 - alpha * (1 + eps)), torch.inf)
    return lo, hi


@pytest.mark.parametrize("space", ["log", "prob"])
def test_interpolated_prox_gradient_is_ppo_clip_on_the_total_ratio(space: str) -> None:
    g = torch.Generator().manual_seed(0)
    b, t, eps = 6, 8, 0.2
    mu = -torch.rand(b, t, generator=g, dtype=torch.float64) * 2 - 0.1
    lp = (mu + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.6).requires_grad_()
    alpha = torch.rand(b, t, generator=g, dtype=torch.float64) * 0.95
    adv = torch.randn(b, t, generator=g, dtype=torch.float64)
    mask = (torch.rand(b, t, generator=g) > 0.2).to(torch.float64)
    inputs = PolicyLossInputs(logp=lp, prox_logp=interpolated_prox(lp, mu, alpha, space), adv=adv, mask=mask,
                              behav_logp=mu)
    out = compute("ppo", inputs, clip_low=eps, clip_high=eps)
    (grad,) = torch.autograd.grad(out.loss, lp)
    rho = torch.exp(lp - mu)
    lo, hi = moved_bounds(alpha, eps, space)
    ref_tok = torch.maximum(-adv * rho, -adv * torch.clamp(rho, lo, hi))
    (ref,) = torch.autograd.grad((ref_tok * mask).sum() / mask.sum(), lp)
    assert torch.allclose(grad, ref, atol=1e-12)
    assert 0.1 < out.metrics["clip_frac"] < 0.9  # both branches occur


def test_recompute_warns_at_staleness(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    strat = Recompute(model, 1.0, 2)
    monkeypatch.setattr(strat, "_forward", lambda m, e: torch.zeros(1, 2))
    strat.prox_logp(toy_experience([[3, 3]], [[0.0, 0.0]]), learner_version=3)
    assert not caplog.records
    strat.prox_logp(toy_experience([[2, 3]], [[0.0, 0.0]]), learner_version=3)
    assert "1 tokens have staleness > 0" in caplog.text


def test_loglinear_follows_the_current_forward_in_the_learner(model: torch.nn.Module) -> None:
    policy = copy.deepcopy(model)
    learner = LMLearner(policy, AlgoConfig(lr=1e-3, warmup_steps=0), temperature=1.0)  # moves prox
    exp = toy_experience([[3, 2, 1], [3, 3, 0]], [[-1.0, -2.0, -3.0], [-0.5, -1.0, -1.5]])
    for strat in (LogLinear(policy, 1.0, 3), LinearProx(policy, 1.0, 3)):
        start = strat.prox_logp(exp, learner_version=3)  # the interpolation at the batch-start forward
        ids, att, s0 = exp.rollout.model_inputs()
        scored = Scored(exp, ids, att, s0, exp.rollout.mask, start, None, torch.zeros(2, 3),
                        prox_follow=strat.follow(exp, learner_version=3))
        before = learner._inputs(scored, torch.arange(2), (6.0, 2.0))
        assert torch.allclose(before.prox_logp, start, atol=1e-6)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.05 * torch.randn_like(p))
        inputs = learner._inputs(scored, torch.tensor([1]), (6.0, 2.0))
        # alpha = s / (s + 1) per token: staleness [0, 0, 3] on row 1
        alpha = torch.tensor([[0.0, 0.0, 0.75]])
        want = interpolated_prox(inputs.logp, exp.rollout.behav_logp[1:], alpha, strat.SPACE)
        assert torch.allclose(inputs.prox_logp, want, atol=1e-6) and not inputs.prox_logp.requires_grad
        assert not torch.allclose(inputs.prox_logp, start[1:], atol=1e-5)  # not the batch-start value


def test_snapshot_memory_is_bounded_and_freed(model: torch.nn.Module) -> None:
    snap = Snapshot(model, 1.0, max_staleness=2)
    for v in range(8):
        snap.on_publish(const_weights(model, float(v)), v)
        snap.release(live_min_version=max(0, v - 2))
        assert len(snap.snapshots) <= 3
    assert sorted(snap.snapshots) == [5, 6, 7] and snap.peak_copies == 3
    exp = toy_experience([[1, 1]], [[0.0, 0.0]])
    with pytest.raises(RuntimeError, match="snapshot of version 1 was freed"):
        snap.prox_logp(exp, learner_version=7)


def test_record_writes_each_token_once() -> None:
    exp = toy_experience([[1, 2, -1]], [[0.0, 0.0, 0.0]])
    assert record(exp, torch.full((1, 3), -1.0), 1) == 1
    assert record(exp, torch.full((1, 3), -9.0), 1) == 0  # already recorded: kept
    assert exp.prox_logp[0].tolist() == [-1.0, 0.0, 0.0] and exp.prox_done[0].tolist() == [True, False, False]


def test_unknown_strategy(model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="unknown old_logits strategy 'magic'; valid: recompute, behavior"):
        make_strategy("magic", model, 1.0, 2)
