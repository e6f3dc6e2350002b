"""Synchronous RL for a language-model policy: sample -> verify -> score -> update -> sync, repeated.

Every step uses seeds derived from ``(cfg.seed, step)`` for the problems, the sampler and the
minibatch order, and a checkpoint stores the weights, optimiser and objective state, so a run
resumed from a checkpoint continues bit for bit (``N`` steps equal ``N/2`` + resume + ``N/2``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ratiolab import tasks
from ratiolab.config import ConfigError, from_dict, to_dict
from ratiolab.config.train import TrainConfig
from ratiolab.engines import HFEngine, Rollout, SamplingParams
from ratiolab.learner import loop
from ratiolab.learner.backends import ray as ray_backend
from ratiolab.learner.lm import LMLearner
from ratiolab.policies import check_context, load_policy
from ratiolab.policies.source import policy_source
from ratiolab.report import LM_PANELS, write_report
from ratiolab.reward_model.scorer import RewardScorer
from ratiolab.rollout import Experience, collect
from ratiolab.rollout.sampler import make_engine, sample_step, sampling_params
from ratiolab.runs import RunDir, check_resume_config, default_run_dir, load_weights, rng_state, step_seed
from ratiolab.trackers import make_trackers

Progress = Callable[[int, dict[str, float]], None]
#: Fields a resumed run may change (``steps`` extends it); any other difference from config.yaml is refused.
RESUME_MAY_CHANGE = ("steps", "run_dir", "threads", "async_rl.ray_address", "log")

@dataclass(frozen=True)
class TrainResult:
    """Where the run lives and its held-out accuracy before and after (greedy; pass@1 when sampled)."""

    run_dir: Path
    base_accuracy: float
    final_accuracy: float
    steps: int
    seconds: float
    report: Path
    base_pass1: float | None = None
    final_pass1: float | None = None


def evaluate(model: PreTrainedModel, tok: PreTrainedTokenizerBase, cfg: TrainConfig) -> dict[str, float]:
    """Held-out accuracy of the fp32 learner weights on ``eval_size`` test problems (multi-turn tasks
    are played out turn by turn): ``eval/accuracy``, the share solved by greedy decoding, and, when
    ``cfg.eval_samples`` is k > 0, ``eval/pass1``: the mean reward of k samples per problem at the
    training temperature (pass@1 of the policy as trained, averaged over k samples)."""
    task = tasks.get(cfg.task.name, **cfg.task.params)
    problems = task.sample(cfg.eval_size, split="test", seed=cfg.seed)
    engine = HFEngine(model, tok, dtype=torch.float32, seed=cfg.seed)
    greedy = SamplingParams(greedy=True, max_new_tokens=cfg.sampling.max_new_tokens)
    out = {"eval/accuracy": float((collect(engine, task, problems, 1, greedy, seed=cfg.seed).rewards >= 1.0)
                                  .float().mean())}
    if cfg.eval_samples:
        sampled = SamplingParams(temperature=cfg.sampling.temperature, max_new_tokens=cfg.sampling.max_new_tokens)
        exp = collect(engine, task, problems, cfg.eval_samples, sampled, seed=cfg.seed)
        out["eval/pass1"] = float((exp.rewards >= 1.0).float().mean())
    return out


def max_response_length(cfg: TrainConfig, task: tasks.Task) -> int:
    """The configured maximum number of policy tokens of a response: ``sampling.max_new_tokens`` per turn."""
    return cfg.sampling.max_new_tokens * (task.max_turns if isinstance(task, tasks.MultiTurnTask) else 1)


def informative_groups(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Ids of the groups whose rewards are not all equal (DAPO's dynamic sampling keeps these), in order."""
    ids = group_ids.unique()
    spread = torch.stack([rewards[group_ids == g].max() - rewards[group_ids == g].min() for g in ids])
    return ids[spread > 0]


def join_groups(parts: list[tuple[Experience, torch.Tensor]]) -> Experience:
    """One experience of the groups ``ids`` of each ``(exp, ids)``, in order: prompts left-padded and
    responses right-padded to the widest part (padding: attention 0, mask 0, version -1)."""
    rows = [(exp, torch.isin(exp.group_ids, ids).nonzero().squeeze(-1)) for exp, ids in parts]
    width_p = max(e.rollout.prompt_ids.shape[1] for e, _ in rows)
    width_t = max(e.rollout.tokens.shape[1] for e, _ in rows)

    def cat(get: Callable[[Rollout], torch.Tensor], width: int, left: bool = False, fill: float = 0) -> torch.Tensor:
        out = []
        for e, r in rows:
            t = get(e.rollout)[r]
            pad = width - t.shape[1]
            out.append(torch.nn.functional.pad(t, (pad, 0) if left else (0, pad), value=fill))
        return torch.cat(out)

    turn_ids = cat(_turn_ids, width_t, fill=-1) if rows[0][0].rollout.turn_ids is not None else None
    rollout = Rollout(
        prompts=[e.rollout.prompts[i] for e, r in rows for i in r.tolist()],
        prompt_ids=cat(lambda ro: ro.prompt_ids, width_p, left=True),
        prompt_mask=cat(lambda ro: ro.prompt_mask, width_p, left=True),
        tokens=cat(lambda ro: ro.tokens, width_t), mask=cat(lambda ro: ro.mask, width_t),
        behav_logp=cat(lambda ro: ro.behav_logp, width_t), version=cat(lambda ro: ro.version, width_t, fill=-1),
        finished=torch.cat([e.rollout.finished[r] for e, r in rows]),
        lengths=torch.cat([e.rollout.lengths[r] for e, r in rows]),
        texts=[e.rollout.texts[i] for e, r in rows for i in r.tolist()], turn_ids=turn_ids,
    )
    group_ids = torch.cat([torch.unique(e.group_ids[r], return_inverse=True)[1] for e, r in rows])
    offsets = torch.tensor([0, *[len(ids) for _, ids in parts]]).cumsum(0)[:-1]
    group_ids = group_ids + torch.cat([torch.full((len(r),), int(o)) for (_, r), o in zip(rows, offsets, strict=True)])
    greedy = None
    if rows[0][0].greedy_rewards is not None:
        greedy = torch.cat([e.greedy_rewards[r] for e, r in rows if e.greedy_rewards is not None])
    if rows[0][0].expert is not None:
        raise ValueError("algo.dynamic_sampling cannot join batches that carry demonstrations (Experience.expert); "
                         "turn dynamic sampling off for an objective that trains on them")
    prefix_tokens = None
    if rows[0][0].prefix_tokens is not None:
        prefix_tokens = torch.cat([e.prefix_tokens[r] for e, r in rows if e.prefix_tokens is not None])
    components = None
    if rows[0][0].reward_components is not None:
        components = torch.cat([e.reward_components[r] for e, r in rows if e.reward_components is not None])
    return Experience(
        rollout, [e.problems[i] for e, r in rows for i in r.tolist()], torch.cat([e.rewards[r] for e, r in rows]),
        group_ids, sum(e.reward_errors for e, _ in rows), greedy, reward_components=components,
        prefix_tokens=prefix_tokens,
    )


def _turn_ids(ro: Rollout) -> torch.Tensor:
    assert ro.turn_ids is not None
    return ro.turn_ids


def sample_batch(
    cfg: TrainConfig, engine: HFEngine, task: tasks.Task, sampling: SamplingParams, step: int,
    with_expert: bool = False,
) -> tuple[Experience, dict[str, float]]:
    """The step's batch of ``prompts_per_step`` groups. With ``algo.dynamic_sampling`` (DAPO, arXiv 2503.14476)
    groups whose rewards are all equal are dropped and further groups sampled, at most
    ``dynamic_sampling_rounds`` rounds; if the rounds run out, dropped groups top the batch up (verl's
    recipe raises instead) so that every step trains on a full batch (``dynamic/filled_groups``)."""
    a = cfg.algo
    kept: list[tuple[Experience, torch.Tensor]] = []
    spare: list[tuple[Experience, torch.Tensor]] = []
    n_kept = dropped = 0
    for round_ in range(a.dynamic_sampling_rounds if a.dynamic_sampling else 1):
        exp = sample_step(cfg, engine, task, sampling, step, "" if round_ == 0 else f"-round{round_}",
                          with_expert=with_expert)
        if not a.dynamic_sampling:
            return exp, {}
        good = informative_groups(exp.rewards, exp.group_ids)
        dropped += a.prompts_per_step - len(good)
        kept.append((exp, good[: a.prompts_per_step - n_kept]))
        n_kept += len(kept[-1][1])
        spare.append((exp, exp.group_ids.unique()[~torch.isin(exp.group_ids.unique(), good)]))
        if n_kept == a.prompts_per_step:
            break
    filled = a.prompts_per_step - n_kept
    for exp, ids in spare:
        take = ids[: a.prompts_per_step - n_kept]
        kept.append((exp, take))
        n_kept += len(take)
    batch = join_groups([(e, ids) for e, ids in kept if len(ids)])
    return batch, {"dynamic/dropped_groups": float(dropped), "dynamic/rounds": float(round_ + 1),
                   "dynamic/filled_groups": float(filled)}


def _run_sync(
    cfg: TrainConfig, learner: LMLearner, engine: HFEngine, task: tasks.Task, first: int,
    finish_step: Callable[[int, dict[str, Any]], None],
) -> None:
    """Steps ``first .. cfg.steps``: sample -> verify -> score -> update -> sync weights.

    ReMix [inferred]: a step that replays a past batch (:meth:`LMLearner.replay`) samples nothing
    (that is where ReMix saves rollouts); the fresh batches enter the replay window. A set
    ``async_rl.old_logits`` (one of ``SYNC_STRATEGIES``) supplies ``prox_logp`` at staleness 0:
    ``behavior`` takes the engine's log-probs and skips the scoring forward.
    """
    sampling = sampling_params(cfg)
    strategy = loop.make_old_logits(cfg, learner) if cfg.async_rl.old_logits != "auto" else None
    for step in range(first, cfg.steps + 1):
        t0 = time.perf_counter()
        replayed = learner.replay(torch.Generator().manual_seed(step_seed(cfg.seed, step, "replay")))
        sampled: dict[str, float] = {}
        if replayed is None:
            exp, sampled = sample_batch(cfg, engine, task, sampling, step, learner.wants_demonstrations)
        t1 = time.perf_counter()
        if replayed is None:
            prox = None if strategy is None else strategy.prox_logp(exp, step - 1)
            scored = learner.remember(learner.score(exp, prox_logp=prox))
        else:
            scored = replayed
        exp = scored.exp
        t2 = time.perf_counter()
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, "minibatch"))
        metrics: dict[str, Any] = learner.update(scored, gen) | sampled
        engine.load_weights(learner.model.state_dict(), version=step)
        metrics.update({
            "step": step,
            "reward/mean": float(exp.rewards.mean()),
            "reward/errors": exp.reward_errors,
            "response/length": float(exp.rollout.mask.sum(-1).float().mean()),
            "time/generate": t1 - t0, "time/score": t2 - t1, "time/train": time.perf_counter() - t2,
        } | batch_metrics(exp))
        finish_step(step, metrics)


def batch_metrics(exp: Experience) -> dict[str, float]:
    """What the batch carries besides its samples: the greedy baseline's mean reward (``reward/greedy_mean``),
    the off-policy prefix tokens kept out of the loss (``prefix/tokens``, ``prefix/rows``: their sum and the
    share of rows with one)."""
    out: dict[str, float] = {}
    if exp.greedy_rewards is not None:
        out["reward/greedy_mean"] = float(exp.greedy_rewards.mean())
    if exp.prefix_tokens is not None:
        out["prefix/tokens"] = float(exp.prefix_tokens.sum())
        out["prefix/rows"] = float((exp.prefix_tokens > 0).float().mean())
    return out


def train(cfg: TrainConfig, *, resume: bool = False, progress: Progress | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Run (or resume, from ``cfg.run_dir``'s latest checkpoint) ``cfg.steps`` RL steps.

    A resumed run keeps its stored config except :data:`RESUME_MAY_CHANGE`; one that stopped before its
    first checkpoint starts over in its folder.
    """
    cfg.validate()
    if cfg.run_dir is None and resume:
        raise ConfigError("resume: give run_dir, the folder of the run to continue")
    run_dir = cfg.run_dir if cfg.run_dir is not None else default_run_dir(cfg.algo.objective, cfg.task.name)
    cfg = replace(cfg, run_dir=run_dir)  # the config stored in the run names its folder
    if cfg.async_rl.enabled and cfg.async_rl.backend == "ray":
        ray_backend.preflight(cfg.async_rl)  # a Ray address that does not answer fails before any file is written
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start_time = time.perf_counter()
    run = RunDir.open(run_dir) if resume else None
    if run is not None:
        stored = run.config()
        stored.pop("policy_source", None)
        check_resume_config(run.path, to_dict(from_dict(TrainConfig, stored)), to_dict(cfg), RESUME_MAY_CHANGE)
    source = policy_source(cfg, log)
    model, tok = load_policy(source)
    model.eval()
    task = tasks.get(cfg.task.name, **cfg.task.params)
    prompts = task.sample(cfg.eval_size, "test", cfg.seed) + task.sample(
        cfg.algo.prompts_per_step, "train", step_seed(cfg.seed, 1, "problems"))
    check_context(model, tok, [p.prompt for p in prompts], max_response_length(cfg, task), f"task {cfg.task.name}")
    if task.long_answers:
        need = tasks.completion_tokens(task, prompts, tok)
        if need > cfg.sampling.max_new_tokens:
            raise ConfigError(f"sampling.max_new_tokens = {cfg.sampling.max_new_tokens} cuts the answers of task "
                              f"{cfg.task.name} (the longest sampled one takes {need} tokens with EOS); raise it, "
                              f"e.g. --set sampling.max_new_tokens={need}")
    ref = load_policy(source)[0].eval() if cfg.algo.kl_placement != "none" else None
    sc, kept = cfg.sampling, cfg.sampling.logprob_support == "kept"  # kept: score on the engine's truncated support
    support = SamplingParams(temperature=sc.temperature, top_p=sc.top_p, top_k=sc.top_k) if kept else None
    with torch.random.fork_rng(devices=[]):  # modules built here (SAFE's critic) start from the run's seed
        torch.manual_seed(step_seed(cfg.seed, 0, "modules"))
        scorer = RewardScorer(cfg.reward, tok, source) if cfg.reward.models else None
        learner = LMLearner(model, cfg.algo, sc.temperature, ref_model=ref, support=support,
                            max_response_length=max_response_length(cfg, task), total_iterations=cfg.steps,
                            reward_model=scorer)

    stored_cfg = to_dict(cfg) | {"policy_source": str(source)}
    if run is not None:
        ckpt = run.resume_point()  # a run without an intact checkpoint stops here, its config untouched
        run.write_config(stored_cfg)  # an extended run records its new length
    else:
        run, ckpt = RunDir.create(run_dir, stored_cfg), None
    if ckpt is not None:
        load_weights(model, ckpt.weights)
        learner.load_state_dict(ckpt.state["learner"])
        first, base = ckpt.step + 1, dict(ckpt.state["base_eval"])
        log(f"resumed {run.path} at step {ckpt.step}")
    else:
        base = evaluate(model, tok, cfg)
        first = 1
    engine = make_engine(model, tok, cfg, version=first - 1)
    last = base | run.last_values(base)  # a finished run resumed reports its last evaluation
    elapsed = run.last_values(("time/elapsed",)).get("time/elapsed", 0.0) - start_time  # a resume continues the clock

    def finish_step(step: int, metrics: dict[str, Any]) -> None:
        """Evaluate, log, checkpoint and report progress after the update of ``step``."""
        if step % cfg.eval_every == 0 or step == cfg.steps:
            t0 = time.perf_counter()
            last.update(evaluate(model, tok, cfg))
            metrics.update(last)
            metrics["time/eval"] = time.perf_counter() - t0
        metrics["time/elapsed"] = elapsed + time.perf_counter()
        run.log(metrics)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            run.save(step, model, {
                "learner": learner.state_dict(), "base_eval": base, "rng": rng_state(), "step": step,
            }, tokenizer=tok)
        if progress is not None:
            progress(step, {"reward": metrics["reward/mean"], "accuracy": last["eval/accuracy"]})

    resumed_at = (-1 if ckpt is None else ckpt.step) if resume else None  # the step metrics.jsonl now ends at
    trackers = run.tracker = make_trackers(cfg.log, run.path, stored_cfg, resumed_at)
    with trackers:  # closed at the end and on an error
        if ckpt is None:
            run.log({"step": 0, **base, "time/elapsed": elapsed + time.perf_counter()})
        if cfg.async_rl.enabled:
            loop.run_async(cfg, learner, engine, first, finish_step)
        else:
            _run_sync(cfg, learner, engine, task, first, finish_step)
    greedy = f"base {base['eval/accuracy']:.1%} -> trained {last['eval/accuracy']:.1%}"
    summary = [("held-out accuracy (greedy)", greedy)]
    if "eval/pass1" in base:
        summary.append((f"held-out pass@1 ({cfg.eval_samples} samples at T={cfg.sampling.temperature:g})",
                        f"base {base['eval/pass1']:.1%} -> trained {last['eval/pass1']:.1%}"))
    report = write_report(
        run, LM_PANELS, title=f"ratiolab: {cfg.algo.objective} on {cfg.task.name}",
        summary=[*summary, ("objective", cfg.algo.objective), ("advantage", cfg.algo.advantage),
                 ("policy", str(source)), ("steps", str(cfg.steps))],
    )
    return TrainResult(run.path, base["eval/accuracy"], last["eval/accuracy"], cfg.steps,
                       time.perf_counter() - start_time, report, base.get("eval/pass1"), last.get("eval/pass1"))
