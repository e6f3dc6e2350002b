"""PPO with a critic on the language-model track: GAE/EGAE worked examples, the clipped value loss, PPO-max's
reward scaling, the value head as a learner part, and its checkpoint."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ratiolab.advantages import compute
from ratiolab.cli import main
from ratiolab.config import override
from ratiolab.config.presets import preset
from ratiolab.learner import TrainConfig, train
from ratiolab.learner.critic import RewardNormalizer
from ratiolab.learner.lm import LMLearner
from ratiolab.learner.value_head import ValueHeadHook, clipped_value_loss, shape_scores
from ratiolab.masked import masked_mean, masked_var
from ratiolab.rollout import Experience
from ratiolab.runs import RunDir

V = torch.tensor([[0.5, 0.6, 0.7]], dtype=torch.float64)
ONES = torch.ones(1, 3, dtype=torch.float64)
END = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)


def test_egae_and_gae_worked_examples() -> None:
    """docs/methods/rlhf.md §7: V = [0.5, 0.6, 0.7], gamma 1, lam 0.95."""
    cut = compute("egae", rewards=torch.zeros_like(V), values=V, mask=ONES, finished=torch.tensor([False]),
                  gamma=1.0, lam=0.95)
    assert cut[0].tolist() == pytest.approx([0.195, 0.1, 0.0], abs=1e-12)
    done = compute("egae", rewards=END, values=V, mask=ONES, finished=torch.tensor([True]), gamma=1.0, lam=0.95)
    assert done[0].tolist() == pytest.approx([0.46575, 0.385, 0.3], abs=1e-12)
    plain = compute("gae", rewards=END, values=V, mask=ONES, gamma=1.0, lam=0.95)
    assert torch.equal(plain, done)
    targets = compute("egae", rewards=END, values=V, mask=ONES, finished=torch.tensor([True]), gamma=1.0, lam=1.0) + V
    assert targets[0].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)


def test_egae_drops_the_outcome_of_a_cut_row_and_bootstraps_from_its_last_real_token() -> None:
    """Two rows, right-padded: a cut row of 2 tokens with a (spurious) score 5 takes V(s_2) := V_1 = 0.6 and no
    outcome, with gamma 0.9: delta_1 = 0.9 * 0.6 - 0.6 = -0.06, delta_0 = 0.9 * 0.6 - 0.5 = 0.04,
    A_0 = 0.04 + 0.9 * 0.95 * (-0.06) = -0.0113; the finished row is plain GAE."""
    values = torch.tensor([[0.5, 0.6, 9.0], [0.5, 0.6, 0.7]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    rewards = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    out = compute("egae", rewards=rewards, values=values, mask=mask, finished=torch.tensor([False, True]),
                  gamma=0.9, lam=0.95)
    assert out[0].tolist() == pytest.approx([-0.0113, -0.06, 0.0], abs=1e-12)
    gae = compute("gae", rewards=rewards[1:], values=values[1:], mask=mask[1:], gamma=0.9, lam=0.95)
    assert torch.equal(out[1:], gae)


def test_gae_takes_the_token_kl_as_a_reward_shaping() -> None:
    """``r_t - beta kl_t``: gamma 1, lam 1, V = 0 -> A_t = sum_{s >= t} r_s = [1 - 0.3, 1 - 0.2, 1 - 0.1] * ..."""
    kl = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    out = compute("gae", rewards=END, values=torch.zeros_like(V), mask=ONES, kl=kl, beta=0.1, gamma=1.0, lam=1.0)
    assert out[0].tolist() == pytest.approx([1.0 - 0.6, 1.0 - 0.5, 1.0 - 0.3], abs=1e-12)


def test_clipped_value_loss_numbers() -> None:
    """docs/methods/baselines.md §5: V 0.9, V_old 0.3, R 1, c 0.2 -> clipped V 0.5: 0.5 max(0.01, 0.25) = 0.125."""
    one = torch.ones(1, 1)
    loss, frac = clipped_value_loss(torch.full((1, 1), 0.9), torch.full((1, 1), 0.3), one, one, clip=0.2,
                                    num_tokens=1.0)
    assert float(loss) == pytest.approx(0.125, abs=1e-7) and float(frac) == 1.0
    # a second token inside the band (V 0.35, V_old 0.3, R 0.5: 0.5 * 0.0225), a third one masked out; token mean
    v, old = torch.tensor([[0.9, 0.35, 7.0]]), torch.tensor([[0.3, 0.3, 0.0]])
    target, mask = torch.tensor([[1.0, 0.5, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    loss, frac = clipped_value_loss(v, old, target, mask, clip=0.2, num_tokens=2.0)
    assert float(loss) == pytest.approx((0.125 + 0.5 * 0.0225) / 2, abs=1e-7) and float(frac) == 0.5
    unclipped, _ = clipped_value_loss(v, old, target, mask, clip=None, num_tokens=2.0)
    assert float(unclipped) == pytest.approx((0.5 * 0.01 + 0.5 * 0.0225) / 2, abs=1e-7)
    halves = [clipped_value_loss(v[:, :k], old[:, :k], target[:, :k], mask[:, :k], clip=0.2, num_tokens=2.0)[0]
              for k in (1,)] + [clipped_value_loss(v[:, 1:], old[:, 1:], target[:, 1:], mask[:, 1:], clip=0.2,
                                                   num_tokens=2.0)[0]]
    assert float(sum(halves)) == pytest.approx(float(loss), abs=1e-7)  # micro-batches sum to the token mean


def test_ppo_max_reward_scaling_example() -> None:
    """docs/methods/rlhf.md §8: scores [1, 3] from the initial moments: mean 2, var 1, std sqrt(2) (N / (N - 1))."""
    moments = RewardNormalizer(count=1e-24, ddof=0)
    out = shape_scores(torch.tensor([1.0, 3.0]), moments, center=False, clip=0.0)
    assert out.tolist() == pytest.approx([0.707107, 2.121320], abs=1e-6)
    assert (moments.mean, moments.var, moments.std()) == pytest.approx((2.0, 1.0, math.sqrt(2.0)), abs=1e-9)
    centred = shape_scores(torch.tensor([1.0, 3.0]), RewardNormalizer(count=1e-24, ddof=0), center=True, clip=0.5)
    assert centred.tolist() == pytest.approx([-0.5, 0.5], abs=1e-6)  # [-0.707107, 0.707107] clipped to 0.5
    constant = RewardNormalizer(count=1e-24, ddof=0)
    assert shape_scores(torch.tensor([1.0, 1.0]), constant, center=False, clip=0.0).tolist() == [1.0, 1.0]


def make(model: torch.nn.Module, *sets: str) -> LMLearner:
    cfg = override(TrainConfig(), ["algo.objective=ppo", "algo.advantage=gae", "algo.samples_per_prompt=2",
                                   *sets]).algo
    return LMLearner(copy.deepcopy(model), cfg, temperature=1.0)


def cut(exp: Experience) -> Experience:
    """An untrained policy never stops: rows of different lengths, some finished (EOS), as sampling would end."""
    exp = copy.deepcopy(exp)
    ro = exp.rollout
    ro.lengths = torch.tensor([4, 2, 3, 1, 4, 2, 3, 4])
    ro.mask = (torch.arange(ro.tokens.shape[1]) < ro.lengths[:, None]).to(ro.mask.dtype)
    ro.behav_logp = ro.behav_logp * ro.mask
    ro.finished = torch.tensor([True, True, False, True, False, True, True, False])
    return exp


def test_scoring_gives_whitened_gae_and_returns_of_the_values(setup: tuple) -> None:
    """The hook scores by hand: V_old = 0 (zero head) -> A = GAE of the score on the last token, R = A + V_old;
    after one update V_old moves and R = raw GAE + V_old still holds; advantages whitened over valid tokens."""
    model, exp = setup[0], cut(setup[1])
    learner = make(model, "algo.minibatches=1", "algo.lr=1e-2", "algo.advantage_params={gamma: 1.0, lam: 0.9}")
    s = learner.score(exp)
    assert s.old_value is not None and s.value_target is not None
    assert float(s.old_value.abs().max()) == 0.0
    learner.update(s, torch.Generator().manual_seed(0))
    s = learner.score(exp)
    assert s.old_value is not None and s.value_target is not None and float(s.old_value.abs().sum()) > 0
    rewards = torch.zeros_like(s.mask)
    rewards[torch.arange(8), exp.rollout.lengths - 1] = exp.rewards
    raw = compute("gae", rewards=rewards, values=s.old_value, mask=s.mask, gamma=1.0, lam=0.9)
    torch.testing.assert_close(s.value_target, (raw + s.old_value) * s.mask)
    assert float(masked_mean(s.adv, s.mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(masked_var(s.adv, s.mask)) == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(s.adv, ((raw - masked_mean(raw, s.mask)) / masked_var(raw, s.mask).add(1e-8).sqrt())
                               * s.mask)


def test_egae_trains_the_value_on_finished_rows_only(setup: tuple) -> None:
    model, exp = setup[0], cut(setup[1])
    learner = make(model, "algo.advantage=egae", "algo.minibatches=1")
    s = learner.score(exp)
    mask = learner.hook(ValueHeadHook).value_mask(s)
    assert mask.sum(-1).tolist() == [4, 2, 0, 1, 0, 2, 3, 0]


@pytest.mark.parametrize("trunk", ["shared", "separate"])
def test_training_lowers_the_value_loss_on_a_fixed_batch(setup: tuple, trunk: str) -> None:
    """``ppo`` + ``gae``: policy and value head (on the policy's trunk, or on a trunk of its own) train together;
    the value loss of a fixed batch (Monte-Carlo targets, ``target_lam`` 1) falls below half its first value."""
    model, exp = setup[0], cut(setup[1])
    learner = make(model, f"algo.value.model={trunk}", "algo.minibatches=2", "algo.micro_batches=2", "algo.lr=3e-3",
                   "algo.warmup_steps=0", "algo.value.target_lam=1.0")
    losses = []
    torch.set_flush_denormal(True)
    try:
        for k in range(12):
            m = learner.update(learner.score(exp), torch.Generator().manual_seed(k))
            losses.append(m["value/loss"])
            assert math.isfinite(m["loss"]) and m["value/grad_norm"] > 0
    finally:
        torch.set_flush_denormal(False)
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0], losses
    assert "value/mean" in m and "value/clip_frac" in m


def test_the_value_loss_is_added_once_with_its_coefficient(setup: tuple) -> None:
    """``loss`` = policy loss + value_coef * value loss: the difference between coefficients 0 and 2 is twice the
    value loss (same batch, same weights)."""
    model, exp = setup[0], cut(setup[1])
    out = {}
    for coef in (0.0, 2.0):
        learner = make(model, "algo.minibatches=1", f"algo.value.value_coef={coef}")
        out[coef] = learner.update(learner.score(exp), torch.Generator().manual_seed(0))
    assert out[2.0]["loss"] - out[0.0]["loss"] == pytest.approx(2.0 * out[0.0]["value/loss"], rel=1e-4)
    assert out[0.0]["value/loss"] > 0


def test_checkpoint_round_trip_carries_the_value_head(setup: tuple) -> None:
    model, exp = setup[0], cut(setup[1])
    sets = ("algo.minibatches=1", "algo.value.reward_scaling=true", "algo.value.model=separate")
    a = make(model, *sets)
    a.update(a.score(exp), torch.Generator().manual_seed(0))
    state = copy.deepcopy(a.state_dict())
    assert set(state["value_head"]) == {"net", "optimizer", "moments"}
    b = make(model, *sets)
    b.model.load_state_dict(a.model.state_dict())
    b.load_state_dict(state)
    ma = a.update(a.score(exp), torch.Generator().manual_seed(1))
    mb = b.update(b.score(exp), torch.Generator().manual_seed(1))
    assert ma["value/loss"] == mb["value/loss"] and ma["reward/running_std"] == mb["reward/running_std"]
    for x, y in zip(a.hook(ValueHeadHook).net.parameters(), b.hook(ValueHeadHook).net.parameters(), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="lacks value_head state"):
        make(model, *sets).load_state_dict({k: v for k, v in state.items() if k != "value_head"})


def test_an_objective_with_its_own_critic_refuses_a_value_advantage(setup: tuple) -> None:
    cfg = override(TrainConfig(), ["algo.objective=safe", "algo.advantage=gae", "algo.samples_per_prompt=2"]).algo
    with pytest.raises(ValueError, match=r"learner parts \['CriticHook', 'ValueHeadHook'\] each score the batch"):
        LMLearner(copy.deepcopy(setup[0]), cfg, temperature=1.0)


SMALL = ["policy.preset=nano", "policy.pretrain_steps=3", "algo.prompts_per_step=2", "algo.samples_per_prompt=2",
         "algo.minibatches=1", "sampling.max_new_tokens=4", "eval_size=2", "eval_every=2", "checkpoint_every=1",
         "threads=1", "algo.objective=ppo", "algo.advantage=gae", "algo.lr=1e-3", "algo.warmup_steps=0",
         "algo.overlong_buffer=3"]  # DAPO's length penalty: rewards (value targets) != 0 before the policy learns


def test_train_runs_ppo_with_gae_and_resumes_the_value_head(tmp_path: Path) -> None:
    """``ratiolab train --set algo.objective=ppo --set algo.advantage=gae``: the run trains the value head, its
    state is in the checkpoint, and a resumed run continues bit for bit."""
    def cfg(name: str, steps: int) -> TrainConfig:
        return override(TrainConfig(), [*SMALL, f"policy.cache_dir={tmp_path / 'cache'}",
                                        f"run_dir={tmp_path / name}", f"steps={steps}"])

    full = train(cfg("a", 3), log=lambda _: None)
    rows = [r for r in RunDir.open(full.run_dir).metrics() if r["step"] > 0]
    assert all(r["value/loss"] > 0 for r in rows) and len(rows) == 3 and rows[-1]["value/grad_norm"] > 0
    train(cfg("b", 2), log=lambda _: None)
    resumed = train(cfg("b", 3), resume=True, log=lambda _: None)
    a = load_file(str(full.run_dir / "checkpoints" / "step-00000003" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "checkpoints" / "step-00000003" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = [r for r in RunDir.open(resumed.run_dir).metrics() if r["step"] > 2]
    assert [r["value/loss"] for r in again] == [r["value/loss"] for r in rows[2:]]


def test_ppo_max_preset_sets_every_ingredient(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/methods/rlhf.md §8, one field per ingredient; ``--set`` after ``--preset`` overrides it."""
    cfg = preset("ppo-max")
    cfg.validate()
    a, v, sp = cfg.algo, cfg.algo.value, cfg.sampling
    assert (v.reward_scaling, v.reward_norm, v.reward_clip) == (True, False, 0.0)  # 1, 2
    assert (a.kl_placement, a.kl_coef) == ("reward_token", 0.01)  # 3
    assert (a.advantage, a.advantage_params) == ("gae", {"gamma": 1.0, "lam": 0.95})  # 4
    assert v.model == "separate"  # 5
    assert (v.value_clip, v.value_coef) == (0.2, 1.0)  # 6
    assert a.objective == "ppo" and a.objective_params == {"clip_low": 0.2, "clip_high": 0.2,
                                                           "aggregation": "token-mean"}  # 7
    assert (a.grad_clip, v.grad_clip) == (1.0, 1.0)  # 8
    assert (a.samples_per_prompt, a.prompts_per_step, a.minibatches) == (1, 28, 2)  # 9
    assert (v.whiten, v.adv_clip, a.entropy_coef) == (False, 0.0, 0.0)  # 10
    assert (a.adam_beta2, a.adam_eps, v.lr, sp.temperature, sp.top_p) == (0.95, 1e-6, 3e-4, 0.8, 0.9)  # 11
    assert main(["config", "--show", "--preset", "ppo-max", "--set", "algo.value.whiten=true"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["algo"]["value"]["whiten"] is True and shown["algo"]["value"]["reward_scaling"] is True


def test_ppo_max_preset_trains(tmp_path: Path) -> None:
    """The preset runs as configured (separate critic, reward scaling, token KL against the reference)."""
    small = [s for s in SMALL if not s.startswith(("algo.objective", "algo.advantage", "algo.samples_per_prompt"))]
    cfg = override(preset("ppo-max"), [*small, "algo.samples_per_prompt=1", f"policy.cache_dir={tmp_path / 'c'}",
                                       f"run_dir={tmp_path / 'run'}", "steps=2"])
    rows = [r for r in RunDir.open(train(cfg, log=lambda _: None).run_dir).metrics() if r["step"] > 0]
    assert len(rows) == 2 and all(r["value/loss"] > 0 and r["reward/running_std"] > 0 for r in rows)
    assert rows[-1]["kl/coef"] == 0.01


@pytest.mark.parametrize("trunk", ["shared", "separate"])
def test_micro_batches_reproduce_the_full_minibatch_gradient(setup: tuple, trunk: str) -> None:
    """The value loss of each micro-batch is divided by the minibatch's value-token count: one optimiser step over
    1 or 4 micro-batches (rows of different lengths) gives the same value-model and policy gradients (DESIGN §5,
    aggregation under accumulation); the head is trained first so that its gradient reaches the trunk."""
    model, exp = setup[0], cut(setup[1])
    sets = ("algo.minibatches=1", f"algo.value.model={trunk}", "algo.lr=1e-2", "algo.warmup_steps=0")
    first = make(model, *sets)
    first.update(first.score(exp), torch.Generator().manual_seed(0))
    grads = []
    for n in (1, 4):
        learner = make(model, *sets, f"algo.micro_batches={n}")
        learner.model.load_state_dict(first.model.state_dict())
        learner.load_state_dict(copy.deepcopy(first.state_dict()))
        hook = learner.hook(ValueHeadHook)
        step = hook.before_step
        value_grads: list[torch.Tensor] = []

        def spy(hook: ValueHeadHook = hook, step=step, out: list[torch.Tensor] = value_grads) -> dict[str, float]:
            out.extend(p.grad.clone() for p in hook.net.parameters() if p.grad is not None)
            return step()

        hook.before_step = spy  # type: ignore[method-assign]
        learner.update(learner.score(exp), torch.Generator().manual_seed(1))
        grads.append((value_grads, [p.grad.clone() for p in learner.model.parameters() if p.grad is not None]))
    (v1, p1), (v4, p4) = grads
    assert len(v1) == len(v4) > 0 and float(v1[0].abs().sum()) > 0
    for x, y in zip([*v1, *p1], [*v4, *p4], strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-4)
