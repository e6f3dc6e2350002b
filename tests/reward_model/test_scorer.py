"""RL against reward models: RM rewards in the advantages, the verifier kept as gold, ensembles, PPO-C,
non-finite scores zero-weighted, tokenizer mismatch and config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ratiolab import advantages, tasks
from ratiolab.cli import main
from ratiolab.config import ConfigError, override
from ratiolab.config.train import RewardConfig
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.learner import TrainConfig, train
from ratiolab.learner.lm import LMLearner
from ratiolab.policies import load_policy
from ratiolab.policies.pretrain import save_atomically
from ratiolab.reward_model import build_reward_model, load_reward_model, reward_scores
from ratiolab.reward_model.model import encode_texts
from ratiolab.reward_model.scorer import RewardScorer
from ratiolab.rewards.calibration import CalibrationConfig, calibrate_rewards
from ratiolab.rollout import Experience, collect
from ratiolab.runs import RunDir


def batch(policy_dir: Path) -> Experience:
    """8 level-1 arithmetic responses (4 prompts x 2) of the nano policy, verifier rewards set by hand."""
    model, tok = load_policy(policy_dir)
    task = tasks.get("arithmetic", level=1)
    exp = collect(HFEngine(model, tok, dtype=torch.float32), task, task.sample(4, seed=1), 2,
                  SamplingParams(max_new_tokens=4), seed=2)
    exp.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    return exp


def rm_column(folder: Path, exp: Experience) -> torch.Tensor:
    model, _ = load_reward_model(folder)
    ids, attention, _ = exp.rollout.model_inputs()
    with torch.no_grad():
        return reward_scores(model, ids, attention)


def scorer(policy_dir: Path, folders: list[Path], **cfg: object) -> RewardScorer:
    return RewardScorer(RewardConfig(models=tuple(str(f) for f in folders), **cfg), load_policy(policy_dir)[1],
                        policy_dir)


def test_rm_rewards_replace_the_verifier_which_stays_gold(policy_dir: Path, rm_dirs: list[Path]) -> None:
    exp = batch(policy_dir)
    gold = exp.rewards.clone()
    expected = rm_column(rm_dirs[0], exp)
    scorer(policy_dir, rm_dirs[:1]).relabel(exp)
    torch.testing.assert_close(exp.rewards, expected)
    assert torch.equal(exp.gold_rewards, gold) and exp.reward_metrics == {"reward/nonfinite": 0.0}


@pytest.mark.parametrize("mode", ["mean", "wco", "uwo"])
def test_ensembles_combine_the_members(policy_dir: Path, rm_dirs: list[Path], mode: str) -> None:
    exp = batch(policy_dir)
    cols = torch.stack([rm_column(f, exp) for f in rm_dirs], -1)
    want = {"mean": cols.mean(-1), "wco": cols.amin(-1), "uwo": cols.mean(-1) - 0.1 * cols.var(-1)}[mode]
    scorer(policy_dir, rm_dirs, ensemble=mode).relabel(exp)
    torch.testing.assert_close(exp.rewards, want)
    assert exp.reward_metrics["reward/ensemble_std"] == pytest.approx(float(cols.std(-1).mean()), rel=1e-5)


def test_the_learner_trains_on_rm_rewards_and_logs_gold_and_gap(policy_dir: Path, rm_dirs: list[Path]) -> None:
    exp = batch(policy_dir)
    gold = exp.rewards.clone()
    rm = rm_column(rm_dirs[0], exp)
    model, _ = load_policy(policy_dir)
    algo = override(TrainConfig(), ["algo.samples_per_prompt=2", "algo.minibatches=1"]).algo
    learner = LMLearner(model, algo, 1.0, reward_model=scorer(policy_dir, rm_dirs[:1]))
    s = learner.score(exp)
    adv = advantages.compute(algo.advantage, rewards=rm, group_ids=exp.group_ids)
    torch.testing.assert_close(s.adv, adv[:, None].expand_as(s.mask) * s.mask)
    metrics = learner.update(s, torch.Generator().manual_seed(0))
    assert metrics["gold_reward"] == pytest.approx(float(gold.mean()))
    assert metrics["reward/gap"] == pytest.approx(float((rm - gold).mean()), abs=1e-6)
    assert "reward_model" in learner.state_dict()


def test_a_nan_score_is_counted_and_zero_weighted(policy_dir: Path, rm_dirs: list[Path]) -> None:
    exp = batch(policy_dir)
    sc = scorer(policy_dir, rm_dirs)
    head = sc.members[1].score

    def nan_rows(_module: torch.nn.Module, _inputs: object, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[[0, 5]] = float("nan")
        return out

    head.register_forward_hook(nan_rows)
    model, _ = load_policy(policy_dir)
    learner = LMLearner(model, override(TrainConfig(), ["algo.samples_per_prompt=2"]).algo, 1.0, reward_model=sc)
    before = exp.rollout.mask.clone()
    metrics = learner.update(learner.score(exp), torch.Generator().manual_seed(0))
    assert metrics["reward/nonfinite"] == 2.0 and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert exp.rewards[[0, 5]].tolist() == [0.0, 0.0] and exp.rollout.mask[[0, 5]].sum() == 0
    keep = [1, 2, 3, 4, 6, 7]
    assert torch.equal(exp.rollout.mask[keep], before[keep]) and bool(torch.isfinite(exp.rewards).all())


def test_ppo_c_calibrates_with_the_stated_confidence(policy_dir: Path, rm_dirs: list[Path]) -> None:
    exp = batch(policy_dir)
    exp.rollout.texts[0] = "5 Confidence: 9"
    exp.rollout.texts[1] = "5"
    sc = scorer(policy_dir, rm_dirs[:1], calibration=True)
    model, tok = load_reward_model(rm_dirs[0])
    with torch.no_grad():  # the RM sees the text without its confidence statement
        prompts = [p.prompt for p in exp.problems]
        r = reward_scores(model, *encode_texts(tok, prompts, ["5", "5", *exp.rollout.texts[2:]]))
    conf = torch.tensor([0.9] + [0.5] * 7)
    want, avg = calibrate_rewards(r, conf, 0.0, CalibrationConfig())
    sc.relabel(exp)
    torch.testing.assert_close(exp.rewards, want)
    assert exp.rewards[1] == r[1] and exp.rewards[0] != r[0]  # no statement: no adjustment
    assert sc.state_dict() == {"reward_avg": pytest.approx(avg)}
    sc.load_state_dict({"reward_avg": 0.5})
    assert sc.reward_avg == 0.5


def test_a_tokenizer_that_differs_from_the_policy_is_a_one_line_error(policy_dir: Path, tmp_path: Path) -> None:
    model, tok = build_reward_model(policy_dir)
    tok.add_tokens(["<extra>"])
    model.resize_token_embeddings(len(tok))
    save_atomically(model, tok, tmp_path / "rm", {})
    with pytest.raises(ConfigError) as err:
        scorer(policy_dir, [tmp_path / "rm"])
    text = str(err.value)
    assert str(tmp_path / "rm") in text and str(policy_dir) in text and "\n" not in text and "tokenizer" in text


@pytest.mark.parametrize(("sets", "match"), [
    (["reward.models=[a]", "reward.ensemble=uwo"], "needs >= 2 reward models"),
    (["reward.ensemble=wco"], "without reward.models"),
    (["reward.models=[a]", "reward.calibration_params={weight: 1.0}"], "without reward.calibration=true"),
    (["reward.models=[a]", "reward.calibration=true", "reward.calibration_params={alpha: 2.0}"], "alpha"),
    (["reward.models=[a]", "algo.dynamic_sampling=true"], "dynamic_sampling"),
    (["reward.models=[a]", "algo.advantage=remax", "algo.objective=pg"], "greedy rewards"),
    (["reward.models=['  ']"], "empty folder name"),
])
def test_reward_config_errors(sets: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        override(TrainConfig(), sets).validate()


SMALL = ["algo.prompts_per_step=4", "algo.samples_per_prompt=2", "algo.minibatches=1", "sampling.max_new_tokens=4",
         "eval_size=8", "eval_every=2", "checkpoint_every=2", "threads=1", "steps=2"]


def test_a_run_against_a_reward_model_logs_gold_and_resumes(
    policy_dir: Path, rm_dirs: list[Path], tmp_path: Path,
) -> None:
    cfg = override(TrainConfig(), [*SMALL, f"policy.model={policy_dir}", f"run_dir={tmp_path / 'run'}",
                                   f"reward.models=[{rm_dirs[0]}, {rm_dirs[1]}]", "reward.ensemble=wco",
                                   "reward.calibration=true"])
    train(cfg, log=lambda _: None)
    rows = [r for r in RunDir.open(tmp_path / "run").metrics() if r["step"] > 0]
    assert len(rows) == 2 and all({"gold_reward", "reward/gap", "reward/calibration_avg"} <= set(r) for r in rows)
    for r in rows:
        assert r["reward/gap"] == pytest.approx(r["reward/mean"] - r["gold_reward"], abs=1e-5)
    train(override(cfg, ["steps=3"]), resume=True, log=lambda _: None)
    assert [r["step"] for r in RunDir.open(tmp_path / "run").metrics()] == [0, 1, 2, 3]


def test_cli_reward_flag_and_errors(policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad_rm"
    model, tok = build_reward_model(policy_dir)
    tok.add_tokens(["<extra>"])
    model.resize_token_embeddings(len(tok))
    save_atomically(model, tok, bad, {})
    run = tmp_path / "run"
    assert main(["train", "--model", str(policy_dir), "--reward", f"model:{bad}", "--run-dir", str(run),
                 *[a for s in SMALL for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    assert "differs from the policy's" in err and not run.exists()  # nothing written before the check
    assert main(["train", "--reward", "rm:x"]) == 2
    assert "use verifier, or model:DIR" in capsys.readouterr().err
    assert main(["config", "--show", "--set", "reward.models=[a, b]"]) == 0
    assert "models:\n  - a\n  - b" in capsys.readouterr().out


def test_cli_rm_pairs_and_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rm", "pairs", "--n", "12", "--label-noise", "0.5", "--out", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]) == {"prompt", "chosen", "rejected"}
    assert main(["rm", "train", "--pairs", str(tmp_path / "p.jsonl"), "--preset", "nano", "--steps", "2",
                 "--eval-pairs", "8", "--out", str(tmp_path / "rm")]) == 0
    assert "held-out pair accuracy" in capsys.readouterr().out and (tmp_path / "rm" / "config.json").is_file()
    assert main(["rm", "train", "--label-noise", "2", "--out", str(tmp_path / "rm2")]) == 2
    assert "label_noise" in capsys.readouterr().err and not (tmp_path / "rm2").exists()


def test_the_asynchronous_loop_trains_on_rm_rewards(policy_dir: Path, rm_dirs: list[Path], tmp_path: Path) -> None:
    cfg = override(TrainConfig(), [*SMALL, f"policy.model={policy_dir}", f"run_dir={tmp_path / 'run'}",
                                   f"reward.models=[{rm_dirs[0]}]", "async_rl.enabled=true"])
    train(cfg, log=lambda _: None)
    rows = [r for r in RunDir.open(tmp_path / "run").metrics() if r["step"] > 0]
    assert len(rows) == 2 and all(r["reward/gap"] == pytest.approx(r["reward/mean"] - r["gold_reward"], abs=1e-5)
                                  for r in rows)
