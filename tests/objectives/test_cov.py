"""Clip-Cov / KL-Cov (arXiv 2505.22617): a hand-computed example, the selection rules and the generic checks."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from objcheck import batch, check_all, check_micro_batches, loss_grad, one_row

from ratiolab.objectives import compute
from ratiolab.objectives.cov import Picker, _random, _top, covariance, select
from ratiolab.types import PolicyLossInputs

# One row of 4 tokens; log r = [0.1, 0, -0.3, -0.1], so r = [1.105171, 1, 0.740818, 0.904837].
LOGP = [-0.2, -1.5, -2.0, -0.5]
PROX = [-0.3, -1.5, -1.7, -0.4]
ADV = [2.0, 1.0, -1.0, -0.5]


def example() -> PolicyLossInputs:
    return one_row(LOGP, PROX, ADV)


def test_covariance_is_centred_product() -> None:
    # mean A = 0.375, mean logp = -1.05: cov = (A - 0.375)(logp + 1.05)
    cov = covariance(example())
    assert cov[0].tolist() == pytest.approx([1.38125, -0.28125, 1.30625, -0.48125], abs=1e-12)


def test_clip_cov_worked_example() -> None:
    # band (0.1, 5) holds tokens 1 and 3; token 3 (A < 0, r = 0.74 < 0.8) is PPO-clipped, so token 1 is the only
    # candidate: a budget of 0.5 * 4 = 2 tokens detaches it alone (token 3 keeps its constant 0.8). Loss (token-mean) =
    # (0 + (-1 * 1) + 0.8 + 0.5 * 0.904837) / 4 = 0.063105; grads -A r / 4 on unclipped, kept tokens.
    loss, grad, m = loss_grad("clip_cov", example(), clip_cov_ratio=0.5, clip_cov_lb=0.1)
    assert loss == pytest.approx(0.063105, abs=1e-6)
    assert grad == pytest.approx([0.0, -0.25, 0.0, 0.113105], abs=1e-6)
    assert m["cov/selected_frac"] == 0.25 and m["clip_frac_low"] == 0.25
    # a band that excludes token 1 detaches nothing: token 1 keeps its PPO gradient -2 * 1.105171 / 4
    _, grad, m = loss_grad("clip_cov", example(), clip_cov_ratio=0.25, clip_cov_lb=1.4)
    assert grad[0] == pytest.approx(-0.552585, abs=1e-6) and m["cov/selected_frac"] == 0.0


def test_kl_cov_worked_example() -> None:
    # top-1 cov token is token 1 (1.38125 > 1.30625): loss = (sum_t -A r + 1.0 * |0.1|) / 4 = -0.479276;
    # its gradient gains +coef sign(log r) / 4: (-2 * 1.105171 + 1) / 4 = -0.302585.
    loss, grad, m = loss_grad("kl_cov", example(), kl_cov_ratio=0.25)
    assert loss == pytest.approx(-0.479276, abs=1e-6)
    assert grad == pytest.approx([-0.302585, -0.25, 0.185205, 0.113105], abs=1e-6)
    assert m["cov/selected_frac"] == 0.25
    _, grad0, _ = loss_grad("kl_cov", example(), kl_cov_ratio=0.25, ppo_kl_coef=0.0)
    assert grad0 == pytest.approx([-0.552585, -0.25, 0.185205, 0.113105], abs=1e-6)  # plain -A grad r


def test_selection_budget_seed_and_detached_gradient() -> None:
    inputs = batch(4, b=8, t=6)
    cov = covariance(inputs)
    n = int(inputs.mask.sum())
    params = {"clip_cov_ratio": 0.25, "clip_cov_lb": -10.0, "clip_cov_ub": 10.0, "clip_low": 10.0 / 11,
              "clip_high": 10.0}  # every valid token is a candidate (no PPO clip fires)
    picks = []
    for seed in (0, 1, 0):
        out = compute("clip_cov", inputs, seed=seed, **params)
        (g,) = torch.autograd.grad(out.loss, inputs.logp)
        picks.append(((g == 0) & (inputs.mask > 0) & (inputs.adv != 0)).flatten().tolist())
        # per group of n_g tokens floor(0.25 n_g + u) tokens: between floor and ceil of the expectation
        k = out.metrics["cov/selected_frac"] * n
        assert sum(picks[-1]) == pytest.approx(k) and 0.25 * n - 4 <= k <= 0.25 * n + 4
    assert picks[0] == picks[2] and picks[0] != picks[1]
    moved = replace(inputs, prox_logp=inputs.prox_logp + 0.01)  # new data (next step), same seed: new draws
    (g,) = torch.autograd.grad(compute("clip_cov", moved, seed=0, **params).loss, inputs.logp)
    assert ((g == 0) & (inputs.mask > 0) & (inputs.adv != 0)).flatten().tolist() != picks[0]
    kl = compute("kl_cov", inputs, kl_cov_ratio=0.25, ppo_kl_coef=1.0)
    (g_kl,) = torch.autograd.grad(kl.loss, inputs.logp)
    (g_pg,) = torch.autograd.grad(compute("kl_cov", inputs, kl_cov_ratio=0.25, ppo_kl_coef=0.0).loss, inputs.logp)
    hit = (g_kl - g_pg).abs() > 1e-12
    # penalised tokens are each group's largest-cov ones
    checked = 0
    for grp in torch.unique(inputs.seq_ids):
        rows = inputs.seq_ids == grp
        sel, m = hit[rows], inputs.mask[rows] > 0
        rest = cov[rows][m & ~sel]
        if sel.any() and rest.numel():
            assert cov[rows][sel].min() >= rest.max()
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize(("name", "params"), [
    ("clip_cov", {}), ("kl_cov", {}),
    ("clip_cov", {"clip_cov_ratio": 0.5, "clip_cov_lb": 0.0}), ("kl_cov", {"kl_cov_ratio": 0.3}),
])
def test_generic_checks(name: str, params: dict) -> None:
    check_all(name, **params)


def test_micro_batches_select_the_same_tokens() -> None:
    inputs = batch(3)
    full = compute("kl_cov", inputs, kl_cov_ratio=0.3).metrics["cov/selected_frac"]
    assert full > 0  # the invariance check below really selects tokens
    check_micro_batches("kl_cov", ("token-mean",), kl_cov_ratio=0.3)


@pytest.mark.parametrize(("name", "params", "match"), [
    ("clip_cov", {"clip_cov_ratio": 0.0}, r"clip_cov: clip_cov_ratio must be in \(0, 1\]"),
    ("clip_cov", {"clip_cov_lb": 5.0}, "clip_cov_lb < clip_cov_ub"),
    ("kl_cov", {"kl_cov_ratio": 1.5}, "kl_cov: kl_cov_ratio"),
    ("kl_cov", {"ppo_kl_coef": -1.0}, "ppo_kl_coef must be >= 0"),
])
def test_bad_parameters(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute(name, example(), **params)


def _loop_select(inputs: PolicyLossInputs, cov: torch.Tensor, candidate: torch.Tensor, ratio: float, seed: int,
                 pick: Picker) -> torch.Tensor:
    """The selection written unit by unit, as the module doc defines it: gather the unit's rows, seed its
    generator from the checksum, draw u, take k = floor(ratio n + u) of its row-major candidates."""
    b, t = cov.shape
    ids = inputs.seq_ids.tolist() if inputs.seq_ids is not None else [0] * b
    selected = torch.zeros(b * t, dtype=torch.bool)
    for unit in sorted(set(ids)):
        rows = torch.tensor([i for i, g in enumerate(ids) if g == unit])
        checksum = float((inputs.prox_logp[rows] * inputs.mask[rows]).sum())
        gen = torch.Generator().manual_seed(hash((seed, unit, checksum)) % 2**63)
        n = float(inputs.mask[rows].sum())
        k = math.floor(ratio * n + torch.rand((), generator=gen, dtype=torch.float64).item())
        flat = (rows[:, None] * t + torch.arange(t)).flatten()
        cand = flat[candidate.flatten()[flat]]
        k = min(k, cand.numel())
        if k > 0:
            selected[cand[pick(cov.flatten()[cand], k, gen)]] = True
    return selected.view(b, t)


@pytest.mark.parametrize("case", range(8))
@pytest.mark.parametrize("pick", [_random, _top])
def test_select_equals_the_unit_loop(case: int, pick: Picker) -> None:
    """Float32 batches: no seq_ids, consecutive groups, interleaved groups with arbitrary ids, fractional masks,
    tied cov values (constant advantage per row, repeated logp); the same tokens as the loop, ties included."""
    g = torch.Generator().manual_seed(case)
    b, t = 12, 9
    logp = -torch.rand(b, t, generator=g) * 2
    if case % 2:  # ties: few distinct logp values and one advantage per row
        logp = -torch.randint(0, 3, (b, t), generator=g).float()
    adv = torch.randn(b, 1, generator=g).expand(b, t) if case % 2 else torch.randn(b, t, generator=g)
    mask = (torch.rand(b, t, generator=g) < 0.8).float()
    if case in (4, 5):
        mask = mask * torch.rand(b, t, generator=g)
    seq_ids = [None, torch.arange(b) // 3, torch.tensor([7, 2, 7, 5, 2, 5, 7, 2, 0, 0, 5, 7]),
               torch.randint(0, 4, (b,), generator=g)][case % 4]
    inputs = PolicyLossInputs(logp=logp, prox_logp=logp + 0.1 * torch.randn(b, t, generator=g), adv=adv.clone(),
                              mask=mask, seq_ids=seq_ids)
    cov = covariance(inputs)
    candidate = (mask > 0) & (torch.rand(b, t, generator=g) < 0.7)
    for ratio, seed in ((0.3, 0), (0.6, 3), (1.0, 1)):
        got = select(inputs, cov, candidate, ratio, seed, pick)
        want = _loop_select(inputs, cov, candidate, ratio, seed, pick)
        assert got.sum() > 0 and torch.equal(got, want)
