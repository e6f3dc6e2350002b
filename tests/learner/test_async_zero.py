"""Asynchronous training at max_staleness 0 is synchronous training: the same runs, step for step.

Equal by design: the actor draws batch ``uid`` with the seeds the synchronous loop uses at step ``uid``, and
at staleness 0 it generates that batch only with the weights of version ``uid - 1``. (With staleness 1 and
a slow learner the same test fails: the batches come from older weights.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ratiolab.config import override
from ratiolab.learner import TrainConfig, train
from ratiolab.runs import RunDir

SMALL = [
    "policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=2", "algo.samples_per_prompt=2",
    "algo.minibatches=2", "sampling.max_new_tokens=4", "eval_size=4", "eval_every=100", "checkpoint_every=3",
    "steps=3", "threads=1", "algo.entropy_coef=0.05", "algo.lr=0.01",  # no reward yet: the entropy bonus trains
]
#: the same quantities, whichever loop produced them
SHARED = ("reward/mean", "response/length", "loss", "grad_norm", "approx_kl", "r_stale/mean", "w_disc/mean")


@pytest.mark.parametrize("partial", ["true", "false"])
def test_async_at_staleness_zero_equals_sync_step_for_step(tmp_path: Path, partial: str) -> None:
    cache = tmp_path / "cache"
    runs = {}
    for name, extra in (("sync", []), ("async", ["async_rl.enabled=true", "async_rl.max_staleness=0",
                                               "async_rl.backend=threads", f"async_rl.partial_rollouts={partial}"])):
        cfg = override(TrainConfig(), [*SMALL, f"policy.cache_dir={cache}", f"run_dir={tmp_path / name}", *extra])
        res = train(cfg, log=lambda _: None)
        rows = [r for r in RunDir.open(res.run_dir).metrics() if r["step"] > 0]
        weights = load_file(str(res.run_dir / "checkpoints" / "step-00000003" / "model.safetensors"))
        runs[name] = ([{k: r[k] for k in SHARED} for r in rows], weights)
    (sync_rows, sync_w), (async_rows, async_w) = runs["sync"], runs["async"]
    assert sync_rows == async_rows and sync_rows[-1]["grad_norm"] > 0
    assert sync_w.keys() == async_w.keys() and all(torch.equal(sync_w[k], async_w[k]) for k in sync_w)
