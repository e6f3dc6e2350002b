"""The synchronous loop with ``async_rl.old_logits=behavior``: the engine's log-probs are the old ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ratiolab.config import ConfigError, override
from ratiolab.learner import TrainConfig, train
from ratiolab.learner.lm import LMLearner

SMALL = [
    "policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=4", "algo.samples_per_prompt=2",
    "algo.minibatches=2", "sampling.max_new_tokens=6", "eval_size=8", "eval_every=100", "checkpoint_every=100",
    "steps=2",
]


def run(tmp: Path, *extra: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], int]:
    """Train 2 steps; the ``Scored`` batches and the number of scoring forwards of the current policy."""
    scored: list[Any] = []
    forwards = [0]
    real_score, real_logprobs = LMLearner.score, LMLearner.logprobs

    def score(self: LMLearner, exp: Any, prox_logp: torch.Tensor | None = None, adv: Any = None) -> Any:
        out = real_score(self, exp, prox_logp, adv)
        scored.append((out, real_logprobs(self, self.model, exp)))  # the exact old logits, for comparison
        return out

    def logprobs(self: LMLearner, model: Any, exp: Any) -> torch.Tensor:
        forwards[0] += model is self.model
        return real_logprobs(self, model, exp)

    monkeypatch.setattr(LMLearner, "score", score)
    monkeypatch.setattr(LMLearner, "logprobs", logprobs)
    cfg = override(TrainConfig(), [*SMALL, f"policy.cache_dir={tmp / 'cache'}", f"run_dir={tmp / 'run'}", *extra])
    train(cfg, log=lambda _: None)
    return scored, forwards[0]


def test_behavior_skips_the_scoring_pass_and_takes_the_engine_logprobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scored, forwards = run(tmp_path, "async_rl.old_logits=behavior", monkeypatch=monkeypatch)
    assert forwards == 0
    assert len(scored) == 2
    for s, exact in scored:
        behav = s.exp.rollout.behav_logp.float() * s.mask
        assert torch.equal(s.prox_logp, behav)
        # an fp32 engine samples from the learner's own distribution: behaviour = old logits to numerics
        torch.testing.assert_close(s.prox_logp, exact, atol=1e-4, rtol=0)


def test_default_sync_loop_scores_with_the_current_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scored, forwards = run(tmp_path, monkeypatch=monkeypatch)
    assert forwards == 2
    for s, exact in scored:
        assert torch.equal(s.prox_logp, exact)


def test_sync_loop_refuses_an_async_only_strategy(tmp_path: Path) -> None:
    cfg = override(TrainConfig(), [*SMALL, "async_rl.old_logits=snapshot", f"run_dir={tmp_path / 'r'}"])
    with pytest.raises(ConfigError, match=r"async_rl\.old_logits set without async_rl\.enabled=true"):
        cfg.validate()
