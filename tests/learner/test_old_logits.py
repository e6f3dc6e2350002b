"""Old-logit strategies in isolation: EWMA arithmetic (async-correction.md §5-§6), A-3PO alpha, snapshot release."""

from __future__ import annotations

import pytest
import torch

from ratiolab.correction.old_logits import Ewma, LogLinear, Recompute, Snapshot, make_strategy, record
from ratiolab.engines import Rollout
from ratiolab.policies import build_policy
from ratiolab.rollout import Experience


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
    with pytest.raises(ValueError, match="reset_tau"):
        Ewma(model, 1.0, 2, reset_tau=0.0)


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


def test_recompute_warns_at_staleness(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    strat = Recompute(model, 1.0, 2)
    monkeypatch.setattr(strat, "_forward", lambda m, e: torch.zeros(1, 2))
    strat.prox_logp(toy_experience([[3, 3]], [[0.0, 0.0]]), learner_version=3)
    assert not caplog.records
    strat.prox_logp(toy_experience([[2, 3]], [[0.0, 0.0]]), learner_version=3)
    assert "1 tokens have staleness > 0" in caplog.text


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
