"""Asynchronous actor/learner training with versioned weights and bounded staleness: the learner loop.

A rollout actor samples batches while the learner trains on earlier ones (:mod:`ratiolab.rollout.actor`,
:mod:`ratiolab.rollout.worker`). After each update the learner publishes its weights with a version
number; the actor loads them between batches, or between two decode steps with ``partial_rollouts``. The
buffer enforces ``max_staleness``. The configured old-logit strategy supplies ``prox_logp``; the exact ones
(snapshot, old_logit_model, sync_interrupt) reproduce pi_{theta_v} of each token's version. Every backend
(:mod:`ratiolab.learner.backends`: threads, process, ray) runs this one loop behind its
:class:`~ratiolab.learner.backends.transport.Transport`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from ratiolab.buffer import VersionedBuffer
from ratiolab.config.train import TrainConfig
from ratiolab.correction.old_logits import OldLogitStrategy, RetireScoring, clone_weights, make_strategy
from ratiolab.engines import HFEngine
from ratiolab.learner.backends import RolloutSource, make_transport
from ratiolab.learner.lm import LMLearner, Scored
from ratiolab.rollout.actor import RetireLedger
from ratiolab.rollout.experience import Experience
from ratiolab.rollout.weights import Weights
from ratiolab.rollout.worker import Fault
from ratiolab.runs import step_seed


def async_diagnostics(s: Scored, learner_version: int, max_staleness: int) -> dict[str, float]:
    """Staleness histogram, partial-rollout share, KL(behav || prox), |log w_disc| by staleness.

    Over the trained tokens (``mask > 0``): staleness ``learner_version - version`` (mean, max, share at each
    ``k <= max_staleness``); the share of rows whose tokens come from more than one version; ``k1`` and ``k3``
    of ``log w = prox - behav``; mean ``|log w|`` at each staleness that occurs (the key only then). All 0
    without trained tokens. One host transfer.
    """
    ro, m = s.exp.rollout, s.mask > 0
    stale = learner_version - ro.version
    log_w = (s.prox_logp - ro.behav_logp.float()).double()
    at_k = (stale == torch.arange(max_staleness + 1, device=stale.device)[:, None, None]) & m  # [K, B, T]
    n = m.sum().double()
    newest = torch.where(m, ro.version, torch.iinfo(ro.version.dtype).min).amax(-1)
    oldest = torch.where(m, ro.version, torch.iinfo(ro.version.dtype).max).amin(-1)
    head = torch.stack([
        torch.where(m, stale, 0).sum() / n.clamp(min=1.0),
        torch.where(n > 0, torch.where(m, stale, torch.iinfo(stale.dtype).min).amax().double(), 0.0),
        (newest > oldest).double().sum() / max(len(newest), 1),  # rows spanning a weight swap
        torch.where(m, -log_w, 0.0).sum() / n.clamp(min=1.0),
        torch.where(m, log_w.exp() - 1.0 - log_w, 0.0).sum() / n.clamp(min=1.0),
    ])
    counts, abs_sums = at_k.flatten(1).sum(1).double(), (at_k * log_w.abs()).flatten(1).sum(1)
    host = torch.cat([head, counts / n.clamp(min=1.0), counts, abs_sums]).tolist()
    k = max_staleness + 1
    mean, vmax, partial, k1, k3 = host[:5]
    fracs, count, abs_sum = host[5:5 + k], host[5 + k:5 + 2 * k], host[5 + 2 * k:]
    out = {"staleness/mean": mean, "staleness/max": vmax,
           **{f"staleness/frac_{i}": fracs[i] for i in range(k)},
           "partial/seq_frac": partial, "kl_behav_prox/k1": k1, "kl_behav_prox/k3": k3}
    out.update({f"w_disc/abs_log_s{i}": abs_sum[i] / count[i] for i in range(k) if count[i]})
    return out


def learner_loop(
    cfg: TrainConfig, learner: LMLearner, buffer: VersionedBuffer[Experience], strategy: OldLogitStrategy,
    source: RolloutSource, publish: Callable[[Weights, int], None], first_step: int,
    on_step: Callable[[int, dict[str, Any]], None], ledger: RetireLedger | None = None,
) -> None:
    """Steps ``first_step .. cfg.steps``: take a batch within the staleness bound, fill its old
    logits, update, publish the next version, free what no live token needs, log diagnostics."""
    ac = cfg.async_rl
    version = first_step - 1
    for step in range(first_step, cfg.steps + 1):
        t0 = time.perf_counter()
        buffer.set_learner(version, busy=False)
        gen_before = source.stats.generate_seconds
        exp = None
        while exp is None:
            exp = buffer.get(version, timeout=0.5)
            if exp is None and not source.alive():
                raise RuntimeError(f"the rollout actor died: {source.error!r}")
        buffer.set_learner(version, busy=True)
        t1 = time.perf_counter()
        if ledger is not None and isinstance(strategy, RetireScoring):
            ledger.wait_scored(exp, version, source.alive)
        lock = ledger.cond if ledger is not None else contextlib.nullcontext()
        with lock:
            prox = strategy.prox_logp(exp, version)
        scored = replace(learner.score(exp, prox_logp=prox), prox_follow=strategy.follow(exp, version))
        t2 = time.perf_counter()
        if ac.learner_delay:
            time.sleep(ac.learner_delay)
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, "minibatch"))
        metrics: dict[str, Any] = learner.update(scored, gen)
        weights = clone_weights(dict(learner.model.state_dict()))
        strategy.on_publish(weights, version + 1)
        publish(weights, version + 1)
        version += 1
        metrics.update(strategy.after_update(metrics, weights))
        live = [v for v in (*source.live_versions(), buffer.live_min_version()) if v is not None]
        strategy.release(min(live, default=version))
        buffer.set_learner(version, busy=False)
        t3 = time.perf_counter()
        metrics.update(async_diagnostics(scored, version - 1, ac.max_staleness))
        metrics.update(strategy.metrics())
        metrics.update({
            "step": step, "version": version, "batch_uid": exp.uid,
            "reward/mean": float(exp.rewards.mean()), "reward/errors": exp.reward_errors,
            "response/length": float(exp.rollout.mask.sum(-1).float().mean()),
            "time/wait": t1 - t0, "time/score": t2 - t1, "time/train": t3 - t2,
            "time/generate": source.stats.generate_seconds - gen_before,
            "buffer/dropped": buffer.stats.dropped_stale + buffer.stats.dropped_overflow,
            "actor/restarts": source.stats.restarts, "actor/mid_generation_syncs": source.stats.syncs_mid_generation,
        })
        on_step(step, metrics)


def make_old_logits(cfg: TrainConfig, learner: LMLearner) -> OldLogitStrategy:
    ac = cfg.async_rl
    name = ac.strategy(cfg.algo.objective)
    return make_strategy(name, learner.model, cfg.sampling.temperature, ac.max_staleness, learner.support,
                         **ac.strategy_params(cfg.algo.objective))


def run_async(
    cfg: TrainConfig, learner: LMLearner, engine: HFEngine, first_step: int,
    on_step: Callable[[int, dict[str, Any]], None], fault: Fault | None = None,
) -> dict[str, Any]:
    """Train steps ``first_step .. cfg.steps`` asynchronously on ``async_rl.backend``; ``on_step`` logs,
    evaluates and checkpoints. ``engine`` samples on the ``threads`` backend (the others build their own).

    Returns the actor and buffer statistics and the old-logit strategy.
    """
    ac = cfg.async_rl
    weights = clone_weights(dict(learner.model.state_dict()))
    transport = make_transport(cfg, engine, weights, first_step - 1, fault)
    try:
        buffer: VersionedBuffer[Experience] = VersionedBuffer(ac.max_staleness, ac.staleness_policy)
        strategy = make_old_logits(cfg, learner)
        strategy.on_publish(weights, first_step - 1)
        source = transport.start(buffer, strategy, first_step)
        try:
            learner_loop(cfg, learner, buffer, strategy, source, transport.publish, first_step, on_step,
                         transport.ledger)
        finally:
            source.shutdown()
    finally:
        transport.close()
    return {"buffer": buffer.stats, "actor": source.stats, "strategy": strategy}
