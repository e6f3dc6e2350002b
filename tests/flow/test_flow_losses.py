"""Diffusion-DRO (worked example 0.021) and SePPO by hand, gradient checks, registry calls."""

from __future__ import annotations

import math

import pytest
import torch

from ratiolab.flow import FLOW_LOSSES, compute, denoising_error


def _t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def test_dro_worked_example() -> None:
    kw = {"err_exp": _t(0.10, 0.12), "err_exp_ref": _t(0.12, 0.10), "err_pol": _t(0.20, 0.15),
          "err_pol_ref": _t(0.15, 0.15)}
    out = compute("diffusion_dro", **{k: v[:1] for k, v in kw.items()})
    assert out.loss.item() == 0.0
    out = compute("diffusion_dro", **{k: v[1:] for k, v in kw.items()})
    assert out.loss.item() == pytest.approx(0.021, abs=1e-9)
    assert compute("diffusion_dro", **kw).loss.item() == pytest.approx(0.0105, abs=1e-9)


def test_dro_gradcheck() -> None:
    errs = [torch.tensor([0.3, 0.1, 0.2], dtype=torch.float64, requires_grad=True) for _ in range(4)]
    errs[1] = errs[1].detach().mul(0.5).requires_grad_()

    def f(*e: torch.Tensor) -> torch.Tensor:
        return compute("diffusion_dro", err_exp=e[0], err_exp_ref=e[1], err_pol=e[2], err_pol_ref=e[3]).loss

    assert torch.autograd.gradcheck(f, tuple(errs))
    loss = f(*errs)
    loss.backward()
    active = ((errs[0] - errs[1]) - (errs[2] - errs[3]) + 0.001 > 0).double()
    assert torch.allclose(errs[0].grad, active / 3) and torch.allclose(errs[2].grad, -active / 3)


def _seppo_kw() -> dict[str, torch.Tensor]:
    # pair 0: d_w = 0.02 > d_l = 0 -> anchor (loser likely a winner); pair 1: d_w = -0.02 < d_l = 0.05 -> DPO
    return {"err_win": _t(0.12, 0.10), "err_win_ref": _t(0.10, 0.12), "err_lose": _t(0.15, 0.20),
            "err_lose_ref": _t(0.15, 0.15)}


def test_seppo_by_hand() -> None:
    kw = _seppo_kw()
    flip_0 = math.log1p(math.exp(-0.1))  # z = -0.5 * 10 * 0.02 = -0.1, flipped: -log sigma(0.1)
    dpo_1 = math.log1p(math.exp(-0.35))  # z = -0.5 * 10 * (-0.07) = 0.35
    out = compute("seppo", **kw, beta=10.0)
    assert out.loss.item() == pytest.approx((flip_0 + dpo_1) / 2, abs=1e-9)
    assert out.metrics["seppo/anchor_frac"].item() == 0.5
    assert compute("seppo", **kw, beta=10.0, mode="sft").loss.item() == pytest.approx((0.12 + dpo_1) / 2, abs=1e-9)


@pytest.mark.parametrize("mode", ["flip", "sft"])
def test_seppo_gradcheck(mode: str) -> None:
    errs = tuple(v.clone().requires_grad_() for v in _seppo_kw().values())

    def f(*e: torch.Tensor) -> torch.Tensor:
        return compute("seppo", err_win=e[0], err_win_ref=e[1], err_lose=e[2], err_lose_ref=e[3], beta=10.0,
                       mode=mode).loss

    assert torch.autograd.gradcheck(f, errs)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="beta"):
        compute("seppo", **_seppo_kw())
    with pytest.raises(ValueError, match="mode must be"):
        compute("seppo", **_seppo_kw(), beta=1.0, mode="x")
    with pytest.raises(ValueError, match="margin"):
        compute("diffusion_dro", err_exp=_t(0), err_exp_ref=_t(0), err_pol=_t(0), err_pol_ref=_t(0), margin=-1.0)
    with pytest.raises(ValueError, match="err_pol must be a \\[B\\] tensor"):
        compute("diffusion_dro", err_exp=_t(0), err_exp_ref=_t(0), err_pol=0.1, err_pol_ref=_t(0))
    assert {"diffusion_dro", "seppo"} <= set(FLOW_LOSSES.names())


def test_denoising_error() -> None:
    pred, target = torch.ones(2, 3, 2), torch.zeros(2, 3, 2)
    pred[1] = 2.0
    assert denoising_error(pred, target).tolist() == [1.0, 4.0]
    with pytest.raises(ValueError, match="share a shape"):
        denoising_error(pred, target[:, :2])
