"""Learning checks on a one-token policy over K responses: each preference loss moves the policy the way
its target says (fast; float64, fixed seeds)."""

from __future__ import annotations

import torch

from ratiolab.preference import PreferenceBatch, compute
from ratiolab.preference.brain import brain_loss

K = 4
REWARD = torch.tensor([1.0, 0.0, 0.5, 0.2], dtype=torch.float64)


def _logp(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(theta, -1)[idx][:, None]


def test_dpo_learns_to_prefer_the_chosen_response() -> None:
    theta = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    ref = torch.full((K,), -torch.log(torch.tensor(float(K))), dtype=torch.float64)
    chosen, rejected = torch.zeros(3, dtype=torch.long), torch.arange(1, K)
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(200):
        b = PreferenceBatch(chosen_logp=_logp(theta, chosen), rejected_logp=_logp(theta, rejected),
                            chosen_mask=torch.ones(3, 1), rejected_mask=torch.ones(3, 1),
                            chosen_ref_logp=ref[chosen][:, None], rejected_ref_logp=ref[rejected][:, None])
        out = compute("dpo", b, validate=False)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert float(torch.softmax(theta.detach(), -1)[0]) > 0.9 and float(out.metrics["dpo/accuracy"]) == 1.0


def test_p3o_on_policy_raises_the_expected_reward() -> None:
    g = torch.Generator().manual_seed(0)
    theta = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    ref = torch.log_softmax(theta.detach(), -1)
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(300):
        probs = torch.softmax(theta.detach(), -1)
        y1, y2 = (torch.multinomial(probs, 16, replacement=True, generator=g) for _ in range(2))
        lp1, lp2 = _logp(theta, y1), _logp(theta, y2)
        b = PreferenceBatch(chosen_logp=lp1, rejected_logp=lp2, chosen_mask=torch.ones(16, 1),
                            rejected_mask=torch.ones(16, 1), chosen_prox_logp=lp1.detach(),
                            rejected_prox_logp=lp2.detach(), chosen_ref_logp=ref[y1][:, None],
                            rejected_ref_logp=ref[y2][:, None], chosen_reward=REWARD[y1], rejected_reward=REWARD[y2])
        opt.zero_grad()
        compute("p3o", b, validate=False).loss.backward()
        opt.step()
    assert float(torch.softmax(theta.detach(), -1) @ REWARD) > 0.8  # 0.425 at the uniform start


def test_brain_over_every_response_converges_to_the_tilted_target() -> None:
    # q = pi_sft uniform and all K responses drawn: b = pi_theta, so the minimiser is pi_sft exp(r / beta)
    theta = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    log_sft = torch.full((1, K), -torch.log(torch.tensor(float(K))), dtype=torch.float64)
    beta = 0.5
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(400):
        per, _ = brain_loss(torch.log_softmax(theta, -1)[None], log_sft, log_sft, REWARD[None], beta)
        opt.zero_grad()
        per.sum().backward()
        opt.step()
    target = torch.softmax(REWARD / beta, -1)
    assert torch.allclose(torch.softmax(theta.detach(), -1), target, atol=1e-3)
