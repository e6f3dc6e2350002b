"""The LM track learns: the run's seed reaches pre-training (and its cache key), and a short run gains a fixed
number of held-out pass@1 points (slow tier)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from ratiolab.config import override
from ratiolab.learner import TrainConfig
from ratiolab.policies.pretrain import PretrainConfig, PretrainResult

source_mod = importlib.import_module("ratiolab.policies.source")


def test_seed_batch_size_and_stopping_rule_reach_pretraining_and_its_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[PretrainConfig] = []

    def fake(_task: object, folder: Path, cfg: PretrainConfig, **_: object) -> PretrainResult:
        seen.append(cfg)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        return PretrainResult(str(folder), cfg.steps, 0.0, 0, 0.0)

    monkeypatch.setattr(source_mod, "pretrain", fake)
    base = [f"policy.cache_dir={tmp_path}", "policy.pretrain_batch_size=32"]
    folders = {seed: source_mod.policy_source(override(TrainConfig(), [*base, f"seed={seed}"]), log=lambda _: None)
               for seed in (0, 1, 0)}
    assert [(c.seed, c.batch_size) for c in seen] == [(0, 32), (1, 32)]  # seed 0 again: the cached checkpoint
    assert folders[0] != folders[1]
    other_batch = source_mod.policy_source(override(TrainConfig(), [f"policy.cache_dir={tmp_path}", "seed=0"]),
                                          log=lambda _: None)
    assert other_batch != folders[0] and seen[-1].batch_size == 64
    stopped = source_mod.policy_source(override(TrainConfig(), [*base, "seed=0", "policy.pretrain_stop_pass1=0.4",
                                                                "policy.pretrain_check_every=5"]), log=lambda _: None)
    assert (seen[-1].stop_pass1, seen[-1].check_every) == (0.4, 5)  # the stopping rule reaches pre-training
    assert stopped not in (folders[0], folders[1], other_batch)  # and its cache key


#: A short GRPO run: a weak tiny base (300 pre-training steps on 2-digit ± 1-digit) and 60 steps of 64 prompts x 8
#: samples at lr 3e-4, evaluated on 100 held-out problems x 4 samples (~50 s at 1 thread on 2 cores). Measured
#: held-out pass@1 gains (points, seed/threads): +7.0 (0/1), +10.5 (1/1), +6.7 (2/1), +4.3 (3/1), +7.0 (0/2).
SHORT_RUN = (
    "task.name=arithmetic",
    "task.params={level: 2, ops: '+-'}",
    "policy.preset=tiny",
    "policy.pretrain_steps=300",
    "algo.objective=grpo",
    "algo.advantage=grpo",
    "algo.lr=3e-4",
    "algo.warmup_steps=5",
    "algo.prompts_per_step=64",
    "algo.minibatches=2",
    "steps=60",
    "eval_every=20",
    "checkpoint_every=60",
    "eval_size=100",
    "eval_samples=4",
    "threads=1",
)

#: The fixed gain the short run must reach: below every measured gain with a margin of > 1 standard error of the
#: difference (pass@1 on 100 x 4 samples at ~25 %: SE ~2.2 points per evaluation, ~3 points on the difference).
MIN_GAIN_POINTS = 3.0


@pytest.mark.slow
def test_short_grpo_run_gains_a_fixed_number_of_held_out_points(tmp_path: Path) -> None:
    from ratiolab.learner import train

    cfg = override(TrainConfig(), [*SHORT_RUN, f"run_dir={tmp_path / 'run'}", f"policy.cache_dir={tmp_path / 'cache'}"])
    result = train(cfg, log=lambda _: None)
    assert result.base_pass1 is not None and result.final_pass1 is not None
    gain = (result.final_pass1 - result.base_pass1) * 100
    assert gain >= MIN_GAIN_POINTS, f"pass@1 {result.base_pass1:.1%} -> {result.final_pass1:.1%}: +{gain:.1f} points"
