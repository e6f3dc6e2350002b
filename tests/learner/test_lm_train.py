"""The synchronous language-model learner: exact resume, every objective, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ratiolab import tasks
from ratiolab.cli import main
from ratiolab.config import ConfigError, override
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.learner import TrainConfig, train
from ratiolab.learner.lm import LMLearner
from ratiolab.objectives import names
from ratiolab.objectives.grpo_guard import GAUSSIAN_ONLY
from ratiolab.policies import build_policy
from ratiolab.rollout import collect
from ratiolab.runs import RunDir

SMALL = [
    "policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=4", "algo.samples_per_prompt=2",
    "algo.minibatches=2", "algo.micro_batches=2", "sampling.max_new_tokens=4", "eval_size=8", "eval_every=2",
    "checkpoint_every=2", "threads=1",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def small_cfg(tmp: Path, cache: Path, *extra: str) -> TrainConfig:
    return override(TrainConfig(), [*SMALL, f"policy.cache_dir={cache}", f"run_dir={tmp / 'run'}", *extra])


def test_resume_continues_bit_for_bit(tmp_path: Path, cache_dir: Path) -> None:
    # an adaptive KL coefficient (horizon = batch size: it moves up to 20% a step) is part of the state; the
    # entropy bonus moves the policy away from the reference (a 3-step pre-trained policy earns no reward)
    kl = ["algo.kl_placement=loss", "algo.kl_coef=0.05", "algo.kl_controller=adaptive", "algo.kl_horizon=8",
          "algo.kl_target=0.02", "algo.entropy_coef=0.1"]
    full = small_cfg(tmp_path / "a", cache_dir, "steps=4", *kl)
    res_full = train(full, log=lambda _: None)
    coefs = [r["kl/coef"] for r in RunDir.open(res_full.run_dir).metrics() if r["step"] > 0]
    assert coefs[0] == 0.05 and len(set(coefs)) == 4
    half = small_cfg(tmp_path / "b", cache_dir, "steps=2", *kl)
    train(half, log=lambda _: None)
    resumed = override(half, ["steps=4"])
    res_resumed = train(resumed, resume=True, log=lambda _: None)
    a = load_file(str(res_full.run_dir / "checkpoints" / "step-00000004" / "model.safetensors"))
    b = load_file(str(res_resumed.run_dir / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in RunDir.open(res_resumed.run_dir).metrics()] == [0, 1, 2, 3, 4]
    elapsed = [r["time/elapsed"] for r in RunDir.open(res_resumed.run_dir).metrics()]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0  # the resumed run continues the clock
    assert (res_full.run_dir / "report.html").is_file() and any((res_full.run_dir / "plots").iterdir())


@pytest.fixture(scope="module")
def experience() -> tuple[torch.nn.Module, object]:
    model, tok = build_policy("tiny", seed=0)
    task = tasks.get("arithmetic", level=1)
    engine = HFEngine(model, tok, dtype=torch.bfloat16)
    exp = collect(engine, task, task.sample(4, seed=1), 4, SamplingParams(max_new_tokens=4), seed=3,
                  with_expert=True)  # demonstrations for the objectives that also train on them (CHORD)
    exp.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0] * 4)  # a random policy is never right: give it signal
    return model, exp


@pytest.mark.parametrize("objective", [n for n in names() if n not in GAUSSIAN_ONLY])
def test_every_objective_trains_a_language_model(objective: str, experience: tuple) -> None:
    model, exp = experience
    cfg = override(TrainConfig(), [f"algo.objective={objective}", "algo.minibatches=2"]).algo
    learner = LMLearner(model, cfg, temperature=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = learner.update(learner.score(exp), torch.Generator().manual_seed(0))
    assert all(isinstance(v, float) for v in metrics.values())
    assert "w_disc/mean" in metrics and metrics["w_disc/min"] != 1.0  # bf16 engine vs fp32 learner
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("objective", GAUSSIAN_ONLY)
def test_gaussian_only_objective_is_refused_on_a_language_model(objective: str, experience: tuple) -> None:
    model, exp = experience
    learner = LMLearner(model, override(TrainConfig(), [f"algo.objective={objective}"]).algo, temperature=1.0)
    with pytest.raises(ValueError, match="defined only for Gaussian transitions"):
        learner.update(learner.score(exp), torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"algo\.objective = 'grpo_guard' is defined only for Gaussian policies"):
        override(TrainConfig(), [f"algo.objective={objective}"]).validate()  # train() refuses it before a run dir


def test_raising_verifier_scores_zero_and_is_counted() -> None:
    model, tok = build_policy("tiny", seed=0)

    class Broken(tasks.Arithmetic):
        def reward(self, problem: tasks.Problem, completion: str) -> float:
            raise RuntimeError("verifier bug")

    task = Broken(level=1)
    exp = collect(HFEngine(model, tok, dtype=torch.float32), task, task.sample(2), 2, SamplingParams(max_new_tokens=2),
                  seed=0)
    assert exp.reward_errors == 4 and float(exp.rewards.sum()) == 0.0


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["task.name=sudoku"], "task: unknown task 'sudoku'"),
        (["algo.objective=ppo3"], "unknown objective 'ppo3'"),
        (["algo.objective_params={eps: 1}"], r"unknown parameter\(s\) \['eps'\]"),
        (["algo.advantage=gea"], "algo.advantage: unknown advantage estimator"),
        (["algo.minibatches=3"], "must divide algo.prompts_per_step = 32"),
        (["algo.kl_coef=0.1"], "set both"),
        (["algo.kl_placement=reward_token", "algo.kl_coef=0.1"], "needs a token-level advantage"),
        (["steps=0"], "steps = 0 must be a positive integer"),
        (["algo.value.value_clip=0"], r"algo\.value\.value_clip = 0\.0 must be in \(0, inf\) \(or null: none\)"),
        (["algo.value.reward_norm=true"], "set algo.value.reward_scaling=true"),
    ],
)
def test_bad_config_fails_before_any_file_is_written(tmp_path: Path, sets: list[str], match: str) -> None:
    cfg = override(TrainConfig(), [*sets, f"run_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=match):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--objective", "nope", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown objective 'nope'" in capsys.readouterr().err
    assert main(["train", "--set", "algo.lr=fast"]) == 2
    assert "algo.lr must be float" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_multi_turn_task_trains_with_a_turn_level_objective(tmp_path: Path, cache_dir: Path) -> None:
    cfg = small_cfg(tmp_path, cache_dir, "steps=1", "task.name=guess", "task.params={max_value: 7, max_turns: 3}",
                    "algo.objective=turn_ppo", "sampling.max_new_tokens=3")
    res = train(cfg, log=lambda _: None)
    row = RunDir.open(res.run_dir).metrics()[-1]
    assert row["step"] == 1 and "loss" in row


def test_engine_without_behaviour_logprobs_is_rejected() -> None:
    model, tok = build_policy("tiny", seed=0)
    engine = HFEngine(model, tok, dtype=torch.float32)
    real = engine.generate

    def generate(*args: object, **kw: object) -> object:
        out = real(*args, **kw)  # type: ignore[arg-type]
        out.behav_logp = None  # type: ignore[assignment]
        return out

    engine.generate = generate  # type: ignore[method-assign]
    task = tasks.get("arithmetic", level=1)
    with pytest.raises(ValueError, match="returned no behav_logp"):
        collect(engine, task, task.sample(2), 2, SamplingParams(max_new_tokens=2), seed=0)
