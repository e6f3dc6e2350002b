"""BAPO (docs/methods/ratio-objectives.md §1): both worked examples, the §14 properties and the pooled state."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from objcheck import batch, check_identity, check_log_gaps, loss_grad, one_row

from ratiolab.objectives import compute, make_state
from ratiolab.objectives.bapo import BapoState, bapo
from ratiolab.objectives.r2vpo import R2vpoState
from ratiolab.types import PolicyLossInputs

R = [1.5, 0.9, 1.1, 0.68]
ADV = [0.5, 0.5, -1.0, -1.0]
GRID = {"lower_start": 0.6, "lower_max": 0.9, "upper_start": 1.2, "upper_max": 2.0,
        "lower_step": 0.05, "upper_step": 0.1}


def example() -> PolicyLossInputs:
    return one_row([math.log(r) for r in R], [0.0] * 4, ADV)


@pytest.mark.parametrize(("variant", "bounds", "per_token", "loss"), [
    ("paper", (0.70, 2.0), [-0.75, -0.45, 1.1, 0.7], 0.15),
    ("official_code", (0.9, 2.0), [-0.75, -0.45, 1.1, 0.9], 0.20),
])
def test_worked_example(variant: str, bounds: tuple[float, float], per_token: list[float], loss: float) -> None:
    inputs = example()
    log_r = inputs.logp - inputs.prox_logp
    target = 0.5 if variant == "paper" else 1.0
    tokens, m = bapo(inputs, log_r, variant=variant, balance_target=target, **GRID)
    assert tokens[0].tolist() == pytest.approx(per_token, abs=1e-9)
    assert (m["bapo/c_low"], m["bapo/c_high"]) == pytest.approx(bounds, abs=1e-9)
    assert compute("bapo", inputs, variant=variant, **GRID).loss.item() == pytest.approx(loss, abs=1e-9)


def test_trace_statistics() -> None:
    inputs = example()
    r, a, mask = inputs.logp.detach().exp(), inputs.adv, inputs.mask
    paper = make_state("bapo", **GRID)
    code = make_state("bapo", variant="official_code", **GRID)
    assert isinstance(paper, BapoState) and isinstance(code, BapoState)
    pos, neg = paper.cfg.partial_sums(r, a, mask)
    assert paper.cfg.balance(pos[0], neg[0]) == pytest.approx(0.201794, abs=1e-6)
    assert paper.cfg.adapt(pos, neg)[2] == pytest.approx(0.521739, abs=1e-6)
    pos, neg = code.cfg.partial_sums(r, a, mask)
    assert code.cfg.balance(pos[0], neg[0]) == pytest.approx(0.589888, abs=1e-6)
    assert code.cfg.balance(pos[0], neg[-1]) == pytest.approx(0.525, abs=1e-6)  # raising c_low made it worse
    assert code.cfg.adapt(pos, neg)[2] == pytest.approx(0.6, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_paper_bounds_in_range_and_share_never_decreases(seed: int) -> None:
    inputs = batch(seed, scale=0.5)
    state = make_state("bapo")
    assert isinstance(state, BapoState)
    pos, neg = state.cfg.partial_sums((inputs.logp - inputs.prox_logp).exp(), inputs.adv, inputs.mask)
    shares = state.cfg.path(pos, neg)[2].tolist()
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(shares))
    m = compute("bapo", inputs).metrics
    assert 0.6 <= m["bapo/c_low"] <= 0.9 + 1e-9 and 1.2 <= m["bapo/c_high"] <= 3.0 + 1e-9


def test_balanced_start_is_ppo_with_start_bounds() -> None:
    inputs = one_row([-1.0, -0.5, -2.0], [-1.2, -0.4, -1.5], [1.0, -0.1, 0.5])  # share >= 0.5 at (0.6, 1.2)
    out = compute("bapo", inputs)
    assert (out.metrics["bapo/c_low"], out.metrics["bapo/c_high"]) == (0.6, 1.2)
    ppo = compute("ppo", inputs, clip_low=0.4, clip_high=0.2)
    assert out.loss.item() == pytest.approx(ppo.loss.item(), abs=1e-12)


def test_fixed_bounds_equal_ppo_e1() -> None:
    fixed = {"lower_start": 0.8, "lower_max": 0.8, "upper_start": 1.2, "upper_max": 1.2}
    inputs = one_row([-1.0, -0.5, -2.0], [-1.2, -0.4, -1.5], [1.0, -1.0, 0.5])
    loss, grad, _ = loss_grad("bapo", inputs, **fixed)
    assert loss == pytest.approx(-0.199476, abs=1e-6)
    assert grad == pytest.approx([0.0, 0.301612, -0.101088], abs=1e-6)
    inputs = batch(4, scale=0.8)
    official = compute("bapo", inputs, variant="official_code", **fixed).loss.item()
    ppo_dual = compute("ppo", inputs, clip_low=0.2, clip_high=0.2, dual_clip_c=3.0).loss.item()
    assert official == pytest.approx(ppo_dual, abs=1e-12)


@pytest.mark.parametrize(("variant", "target"), [("paper", 0.5), ("official_code", 2.0)])
def test_pooled_state_is_split_invariant_and_micro_batches_accumulate(variant: str, target: float) -> None:
    inputs = batch(5, scale=0.5)
    params = {"variant": variant, "balance_target": target}
    whole = make_state("bapo", **params)
    assert isinstance(whole, BapoState)
    whole.observe(inputs)
    pooled = make_state("bapo", **params)
    assert isinstance(pooled, BapoState)
    micros = inputs.split(3)
    for micro in micros:
        pooled.observe(micro)
    assert pooled.bounds() == pytest.approx(whole.bounds(), abs=1e-12)
    assert pooled.bounds()[:2] != (0.6, 1.2)  # the example really adapts
    full = compute("bapo", inputs, state=whole, **params)
    (g_full,) = torch.autograd.grad(full.loss, inputs.logp)
    g_acc = sum(torch.autograd.grad(compute("bapo", m, state=pooled, **params).loss, inputs.logp)[0]
                for m in micros)
    assert torch.allclose(g_acc, g_full, atol=1e-12)
    assert full.metrics["bapo/c_high"] == compute("bapo", inputs, **params).metrics["bapo/c_high"]


def test_state_protocol_round_trip_and_mismatches() -> None:
    state = make_state("bapo")
    assert isinstance(state, BapoState)
    with pytest.raises(ValueError, match="no observations this step"):
        compute("bapo", example(), state=state)
    state.observe(example())
    restored = make_state("bapo")
    assert isinstance(restored, BapoState)
    restored.load_state_dict(state.state_dict())
    assert restored.bounds() == state.bounds()
    state.update({})
    assert state.pos == [] and state.observed_tokens == 0.0
    with pytest.raises(ValueError, match="made with other parameters"):
        compute("bapo", example(), state=restored, upper_max=2.0)
    with pytest.raises(ValueError, match="saved by 'bapo', not 'r2vpo'"):
        R2vpoState().load_state_dict(restored.state_dict())
    with pytest.raises(ValueError, match="layout version 2"):
        restored.load_state_dict({**restored.state_dict(), "version": 2})


@pytest.mark.parametrize("variant", ["paper", "official_code"])
def test_identity_and_log_gaps(variant: str) -> None:
    check_identity("bapo", variant=variant)
    check_log_gaps("bapo", variant=variant)


@pytest.mark.parametrize(("params", "match"), [
    ({"lower_start": -0.1}, r"bapo: need 0 < lower_start <= lower_max < 1"),
    ({"upper_start": 0.9}, r"bapo: need 1 < upper_start <= upper_max"),
    ({"upper_step": 0.0}, "bapo: lower_step and upper_step must be > 0"),
    ({"variant": "v3"}, "bapo: variant must be one of"),
    ({"balance_stat": "ratio"}, "bapo: balance_stat must be one of"),
    ({"dual_clip_c": 0.5}, "bapo: dual_clip_c must be > 1"),
    ({"balance_target": -1.0}, "bapo: balance_target must be > 0"),
])
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute("bapo", example(), **params)


def _reference_sums(cfg, r: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor) -> tuple[list[float], list[float]]:
    """One masked sum per candidate bound, written out token by token (float64)."""
    pos, neg = [], []
    for c in cfg.highs:
        total = 0.0
        for x, a, m in zip(r.flatten().tolist(), adv.flatten().tolist(), mask.flatten().tolist(), strict=True):
            if a > 0 and m > 0:
                total += (x if x < c else 0.0) * a * m if cfg.count_clipped == "exclude" else min(x, c) * a * m
        pos.append(total)
    for c in cfg.lows:
        total = 0.0
        for x, a, m in zip(r.flatten().tolist(), adv.flatten().tolist(), mask.flatten().tolist(), strict=True):
            if a < 0 and m > 0:
                total += (x if x > c else 0.0) * -a * m if cfg.count_clipped == "exclude" else max(x, c) * -a * m
        neg.append(total)
    return pos, neg


def _reference_bounds(cfg, pos: list[float], neg: list[float]) -> tuple[float, float]:
    """The adaptation loop as a loop: widen (or raise) one bound a grid step at a time until the target."""
    def stat(i: int, j: int) -> float:
        p, n = pos[j], neg[i]
        if cfg.balance_stat == "share":
            return p / (p + n) if p + n > 0 else 1.0
        return p / (n + 1e-8)

    i, j, top_i, top_j = 0, 0, len(cfg.lows) - 1, len(cfg.highs) - 1
    if cfg.adapt_order == "upper_first":
        while stat(i, j) < cfg.target and i < top_i:  # "c_low + delta2 <= b-" ends the loop
            if j < top_j:
                j += 1
            else:
                i += 1
    else:
        while stat(i, j) < cfg.target and (i < top_i or j < top_j):
            if i < top_i:
                i += 1
            else:
                j += 1
    return cfg.lows[i], cfg.highs[j]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("switches", [
    {"variant": "paper"}, {"variant": "official_code"},
    {"variant": "paper", "count_clipped": "clipped_value"}, {"variant": "official_code", "count_clipped": "exclude"},
])
def test_one_pass_sums_and_bounds_equal_a_loop_reference(seed: int, switches: dict) -> None:
    """Random batches with ratios on the grid values (ties), masks of every kind and targets near the data's
    balance: the per-candidate sums match a token loop and the bounds are the loop's, exactly."""
    g = torch.Generator().manual_seed(seed)
    state = make_state("bapo", **switches)
    cfg = state.cfg
    b, t = 3, 17
    grid = torch.tensor(cfg.lows + cfg.highs + [1.0], dtype=torch.float64)
    r = torch.where(torch.rand(b, t, generator=g) < 0.4, grid[torch.randint(len(grid), (b, t), generator=g)],
                    torch.rand(b, t, generator=g, dtype=torch.float64) * 3.5)
    adv = torch.randn(b, t, generator=g, dtype=torch.float64) * (torch.rand(b, t, generator=g) < 0.9)
    mask = [torch.ones(b, t), (torch.rand(b, t, generator=g) < 0.6).double(),
            torch.rand(b, t, generator=g, dtype=torch.float64), torch.zeros(b, t)][seed % 4].double()
    pos, neg = cfg.partial_sums(r, adv, mask)
    ref_pos, ref_neg = _reference_sums(cfg, r, adv, mask)
    assert pos.tolist() == pytest.approx(ref_pos, rel=1e-12, abs=1e-12)
    assert neg.tolist() == pytest.approx(ref_neg, rel=1e-12, abs=1e-12)
    for target in (0.2, 0.5, 0.8, 1.0, 3.0):
        tuned = dataclasses.replace(cfg, target=target)
        i, j, _ = tuned.adapt(pos, neg)
        assert (tuned.lows[int(i)], tuned.highs[int(j)]) == _reference_bounds(tuned, ref_pos, ref_neg)


def test_one_pass_ties_on_the_grid_and_an_exact_balance() -> None:
    """Dyadic ratios and advantages (every sum exact in any order). r = c on a bound: not below c_high and not
    above c_low (excluded), and at its clipped value c otherwise. A share of exactly 0.5 meets the target."""
    state = make_state("bapo", lower_start=0.5, lower_max=0.75, lower_step=0.25, upper_start=1.5, upper_max=2.0,
                       upper_step=0.5)
    cfg = state.cfg
    r = torch.tensor([[0.5, 0.75, 1.5, 2.0, 1.0]], dtype=torch.float64)
    adv = torch.tensor([[-1.0, -1.0, 1.0, 1.0, 0.5]], dtype=torch.float64)
    pos, neg = cfg.partial_sums(r, adv, torch.ones(1, 5))
    # c_high 1.5: r < 1.5 only r=1.0 -> 0.5; c_high 2.0: r=1.0, 1.5 -> 0.5 + 1.5 = 2.0
    # c_low 0.5: r > 0.5 only r=0.75 -> 0.75; c_low 0.75: none -> 0
    assert pos.tolist() == [0.5, 2.0] and neg.tolist() == [0.75, 0.0]
    # share at (0.5, 1.5) = 0.5 / 1.25 < 0.5; at (0.5, 2.0) = 2.0 / 2.75; the target 2/2.75 is met exactly there
    i, j, stat = dataclasses.replace(cfg, target=2.0 / 2.75).adapt(pos, neg)
    assert (cfg.lows[int(i)], cfg.highs[int(j)], float(stat)) == (0.5, 2.0, 2.0 / 2.75)
    clipped = dataclasses.replace(cfg, count_clipped="clipped_value")
    pos, neg = clipped.partial_sums(r, adv, torch.ones(1, 5))
    # c_high 1.5: 1.5 + 1.5 + 0.5 = 3.5; 2.0: 1.5 + 2.0 + 0.5 = 4.0; c_low 0.5: 0.5 + 0.75; 0.75: 0.75 + 0.75
    assert pos.tolist() == [3.5, 4.0] and neg.tolist() == [1.25, 1.5]
