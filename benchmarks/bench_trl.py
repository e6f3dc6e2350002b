"""ratiolab ``train`` against TRL's ``GRPOTrainer`` (CPU, no vLLM): wall and CPU time to the same held-out accuracy.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_trl.py --seeds 3 --steps 250 \
        --eval-every 10 --eval-size 500 --gain 0.15 [--ratiolab-set async_rl.old_logits=behavior]

Both sides start from the same pre-trained ratiolab policy folder (``policy_source`` of the demo configuration at
``--policy-seed``, for every seed: arithmetic level 3 ``+-``, tiny preset; ``--set`` overrides it for both), loaded
with ``from_pretrained``, with its character tokenizer, and both use the task's exact verifier as the reward. One RL
step of either samples ``prompts_per_step x samples_per_prompt`` completions of at most ``max_new_tokens`` tokens
(temperature 1, full vocabulary) and makes ``minibatches`` AdamW steps (one epoch, grad clip) on the group-scaled
advantages with the clipped ratio (eps 0.2), seq-mean-token-mean, no KL. Settings made equal, not just alike: TRL
gets ratiolab's own optimiser and schedule (``make_optimizer``: weight decay on every parameter, warm-up from ``lr /
warmup`` at the first step; the HF Trainer would start at 0 and skip decay on biases and norms), and ratiolab's
advantage takes TRL's ``std + 1e-4``. TRL: ``generation_batch_size = prompts x samples``,
``per_device_train_batch_size = that / minibatches``, ``steps_per_generation = minibatches``, ``loss_type="grpo"``,
``scale_rewards="group"``, ``beta=0``, fp32. ``--ratiolab-set`` adds overrides to ratiolab's side only (its system
options, e.g. ``async_rl.old_logits=behavior``, which takes the fp32 engine's log-probs as the old ones and skips
the scoring forward that TRL runs).

For each seed the two sides run one after the other in the same process, the order alternating with the seed.
Held-out greedy accuracy (ratiolab's ``evaluate`` on ``--eval-size`` test problems, the same ones for both sides) is
measured every ``--eval-every`` RL steps; the target is ``base + --gain`` (or ``--target``), the base being the
seed's pre-trained policy. Time to target is counted on two clocks, both excluding evaluation: wall seconds
(``perf_counter``) and the process's CPU seconds (``process_time``, robust to other jobs on a shared machine). A
side stops at the evaluation that first reaches the target (``--full`` runs all ``--steps``). Reported: per seed and
side the steps, wall and CPU seconds to target, the median step time and ratiolab's step split; the medians over
seeds and their ratio ratiolab / TRL (goal <= 0.5).

The FLOP ceiling: the matmul FLOPs of one ratiolab training step (generation, scoring, update; counted by
``torch.utils.flop_counter`` on a real batch), divided by the thread count times the best fp32 GEMM rate one core
reaches (on the CPU clock, at the model's shapes and at 1024^3): the shortest time any implementation of this step
could take on these cores. TRL's step does the same matmuls (it too scores the old log-probs). Writes
benchmarks/results/trl.json."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ratiolab import tasks
from ratiolab.config import override
from ratiolab.config.train import TrainConfig
from ratiolab.learner.demo import DEMO_SETTINGS
from ratiolab.learner.lm import LMLearner, make_optimizer
from ratiolab.learner.train import evaluate, sample_batch, train
from ratiolab.policies import load_policy
from ratiolab.policies.source import policy_source
from ratiolab.rollout.sampler import make_engine, sampling_params

#: TRL's advantage divides by ``std + 1e-4``; both sides take that.
EQUAL = ("algo.advantage_params={eps: 1.0e-4}", "eval_samples=0")


class Reached(Exception):
    """Raised from ratiolab's progress callback to end a run at its target."""


@dataclass
class Clock:
    """Training time (evaluation excluded) on the wall clock and the process CPU clock."""

    wall0: float = 0.0
    cpu0: float = 0.0
    eval_wall: float = 0.0
    eval_cpu: float = 0.0

    def start(self) -> None:
        self.wall0, self.cpu0, self.eval_wall, self.eval_cpu = time.perf_counter(), time.process_time(), 0.0, 0.0

    def now(self) -> tuple[float, float]:
        return (time.perf_counter() - self.wall0 - self.eval_wall, time.process_time() - self.cpu0 - self.eval_cpu)

    def timed_eval(self, fn: Any, *args: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.eval_wall += time.perf_counter() - w
        self.eval_cpu += time.process_time() - c
        return out


@dataclass
class Curve:
    """Per RL step ``(wall, cpu)`` seconds (evaluation excluded) and ``(step, wall so far, cpu so far, accuracy)``."""

    step_seconds: list[tuple[float, float]] = field(default_factory=list)
    evals: list[tuple[int, float, float, float]] = field(default_factory=list)
    mean_length: float = float("nan")
    split: dict[str, float] = field(default_factory=dict)

    def mark(self, clock: Clock) -> None:
        wall, cpu = clock.now()
        last = (sum(w for w, _ in self.step_seconds), sum(c for _, c in self.step_seconds))
        self.step_seconds.append((wall - last[0], cpu - last[1]))


def run_ratiolab(cfg: TrainConfig, target: float, stop: bool) -> Curve:
    """``train`` itself; its ``evaluate`` is timed out of the clock, which starts when the base evaluation ends."""
    clock, curve = Clock(), Curve()
    module = sys.modules[train.__module__]  # train() looks evaluate up there

    def timed(*args: Any) -> dict[str, float]:
        out: dict[str, float] = clock.timed_eval(evaluate, *args)
        if not curve.evals:  # the base evaluation: training starts now
            curve.evals.append((0, 0.0, 0.0, out["eval/accuracy"]))
            clock.start()
        return out

    def progress(step: int, values: dict[str, float]) -> None:
        curve.mark(clock)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            wall, cpu = clock.now()
            curve.evals.append((step, wall, cpu, values["accuracy"]))
            if stop and values["accuracy"] >= target - 1e-6:
                raise Reached

    module.evaluate = timed  # type: ignore[attr-defined]
    try:
        train(cfg, progress=progress, log=lambda _: None)
    except Reached:
        pass
    finally:
        module.evaluate = evaluate  # type: ignore[attr-defined]
    assert cfg.run_dir is not None
    rows = [json.loads(line) for line in (Path(cfg.run_dir) / "metrics.jsonl").read_text().splitlines()][1:]
    curve.mean_length = statistics.fmean(row["response/length"] for row in rows)
    curve.split = {k: statistics.median(row[f"time/{k}"] for row in rows) for k in ("generate", "score", "train")}
    return curve


class EvalClock(TrainerCallback):
    """Marks each RL step (``minibatches`` optimiser steps) and evaluates every ``eval_every`` RL steps,
    evaluation out of the clock; stops at the target."""

    def __init__(self, cfg: TrainConfig, tok: Any, curve: Curve, target: float, stop: bool) -> None:
        self.cfg, self.tok, self.curve, self.target, self.stop = cfg, tok, curve, target, stop
        self.clock = Clock()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self.clock.start()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if state.global_step % self.cfg.algo.minibatches:
            return
        self.curve.mark(self.clock)
        step = state.global_step // self.cfg.algo.minibatches
        if step % self.cfg.eval_every == 0 or step == self.cfg.steps:
            acc = self.clock.timed_eval(evaluate, kwargs["model"], self.tok, self.cfg)["eval/accuracy"]
            wall, cpu = self.clock.now()
            self.curve.evals.append((step, wall, cpu, acc))
            if self.stop and acc >= self.target - 1e-6:
                control.should_training_stop = True


def run_trl(cfg: TrainConfig, source: Path, base_acc: float, out_dir: str, target: float, stop: bool) -> Curve:
    """The same RL run with ``trl.GRPOTrainer``, on ratiolab's optimiser and schedule."""
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as err:
        raise SystemExit(f"TRL cannot run here: {err}. Install it with `.venv/bin/pip install -e '.[bench]'`.") from err
    a, s = cfg.algo, cfg.sampling
    task = tasks.get(cfg.task.name, **cfg.task.params)
    problems = task.sample(cfg.steps * a.prompts_per_step, split="train", seed=cfg.seed)
    dataset = Dataset.from_list([{"prompt": p.prompt, "idx": i} for i, p in enumerate(problems)])

    def verifier(completions: list[str], idx: list[int], **_: Any) -> list[float | None]:
        rewards: list[float | None] = [task.reward(problems[i], c) for i, c in zip(idx, completions, strict=True)]
        return rewards

    args = GRPOConfig(
        output_dir=out_dir, use_cpu=True, use_vllm=False, bf16=False, fp16=False, gradient_checkpointing=False,
        seed=cfg.seed, max_steps=cfg.steps * a.minibatches, learning_rate=a.lr, weight_decay=a.weight_decay,
        max_grad_norm=a.grad_clip,
        per_device_train_batch_size=a.prompts_per_step * a.samples_per_prompt // a.minibatches,
        gradient_accumulation_steps=1, steps_per_generation=a.minibatches, num_generations=a.samples_per_prompt,
        num_iterations=a.epochs, max_completion_length=s.max_new_tokens, temperature=s.temperature,
        top_p=s.top_p, top_k=s.top_k, beta=0.0, epsilon=0.2, loss_type="grpo", scale_rewards="group",
        logging_steps=a.minibatches, save_strategy="no", report_to="none", disable_tqdm=True,
    )
    model, tok = load_policy(source)
    curve = Curve(evals=[(0, 0.0, 0.0, base_acc)])
    trainer = GRPOTrainer(model=model, reward_funcs=verifier, args=args, train_dataset=dataset,
                          processing_class=tok, callbacks=[EvalClock(cfg, tok, curve, target, stop)],
                          optimizers=make_optimizer(model, a))
    trainer.train()
    lengths = [row["completions/mean_length"] for row in trainer.state.log_history
               if "completions/mean_length" in row]
    curve.mean_length = statistics.fmean(lengths)
    return curve


def gemm_rate(shapes: tuple[tuple[int, int, int], ...]) -> dict[str, float]:
    """Best GFLOP/s of one core on ``[M, K] @ [K, N]`` fp32, per shape: one thread, timed on the process CPU
    clock (time on the core, so other jobs on a shared machine do not lower it), best of 5 repeats."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    for m, k, n in shapes:
        x, w = torch.randn(m, k), torch.randn(k, n)
        reps = max(3, int(1e9 / (2 * m * k * n)))
        best = float("inf")
        for _ in range(5):
            t0 = time.process_time()
            for _ in range(reps):
                x @ w
            best = min(best, (time.process_time() - t0) / reps)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / best / 1e9
    torch.set_num_threads(before)
    return out


def flop_ceiling(cfg: TrainConfig, source: Path) -> dict[str, Any]:
    """Matmul FLOPs of one ratiolab step on a real batch (generation, scoring, update) and the ceiling they set."""
    model, tok = load_policy(source)
    model.eval()
    task = tasks.get(cfg.task.name, **cfg.task.params)
    engine = make_engine(model, tok, cfg, version=0)
    learner = LMLearner(model, cfg.algo, cfg.sampling.temperature)
    flops = {}
    with FlopCounterMode(display=False) as fc:
        exp, _ = sample_batch(cfg, engine, task, sampling_params(cfg), 1)
    flops["generate"] = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        scored = learner.score(exp)
    flops["score"] = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        learner.update(scored, torch.Generator().manual_seed(0))
    flops["train"] = fc.get_total_flops()
    tokens = int(exp.rollout.model_inputs()[0].numel())
    d = model.config.hidden_size
    shapes = ((tokens // cfg.algo.minibatches, d, model.config.intermediate_size), (1024, 1024, 1024))
    rates = gemm_rate(shapes)
    best = max(rates.values()) * torch.get_num_threads()  # threads x one core's best: the ceiling
    total = sum(flops.values())
    return {"gflop": {k: v / 1e9 for k, v in flops.items()}, "gflop_total": total / 1e9,
            "gemm_gflops": rates, "ceiling_seconds": total / best / 1e9,
            "ceiling_seconds_without_score": (total - flops["score"]) / best / 1e9,
            "batch_tokens": tokens, "threads": torch.get_num_threads()}


def median_or_none(values: list[float | None]) -> float | None:
    """The median over seeds; a seed that never reached the target counts as +inf (``None`` if most did not)."""
    med = statistics.median([float("inf") if v is None else v for v in values])
    return None if med == float("inf") else med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1, each run on both sides")
    ap.add_argument("--steps", type=int, help="cap on RL steps (default: the demo's)")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--eval-size", type=int, default=500)
    ap.add_argument("--gain", type=float, default=0.15, help="target = the seed's base accuracy + gain")
    ap.add_argument("--report-gains", type=float, nargs="*", default=[0.05, 0.1],
                    help="smaller gains also reported, from the same curves (a run stops only at --gain)")
    ap.add_argument("--target", type=float, help="an absolute held-out accuracy to reach instead")
    ap.add_argument("--policy-seed", type=int, default=0, help="seed of the pre-trained policy all seeds start from")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each side")
    ap.add_argument("--full", action="store_true", help="run all --steps instead of stopping at the target")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override of the demo's TrainConfig for both sides, e.g. algo.lr=1e-3")
    ap.add_argument("--ratiolab-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override for ratiolab's side only, e.g. async_rl.old_logits=behavior")
    ap.add_argument("--from-json", type=Path, help="re-print the report of an earlier run's JSON (no training)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "trl.json")
    args = ap.parse_args()
    gains = sorted({*[g for g in args.report_gains if g < args.gain], args.gain})
    if args.from_json is not None:
        old = json.loads(args.from_json.read_text())
        settings = {k: v for k, v in old.items() if k not in ("step_median", "ratiolab_split", "to_target",
                                                               "flop_ceiling", "seeds")}
        report(settings | {"gains": gains}, old["seeds"], old["flop_ceiling"], gains, args.out)
        return
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    base_cfg = override(TrainConfig(), [*DEMO_SETTINGS, *EQUAL, f"threads={args.threads}",
                                        f"eval_size={args.eval_size}", f"eval_every={args.eval_every}", *args.set])
    steps = args.steps or base_cfg.steps
    base_cfg = override(base_cfg, [f"steps={steps}", f"checkpoint_every={steps}"])
    # one pre-trained policy for every seed: pre-training from other seeds lands anywhere between ~30 % and
    # ~90 % held-out accuracy, which would make "base + gain" a different task per seed
    source = policy_source(override(base_cfg, [f"seed={args.policy_seed}"]))
    base_cfg = override(base_cfg, [f"policy.model={source}"])
    seeds: list[dict[str, Any]] = []
    ceiling: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        for seed in range(args.seeds):
            cfg = override(base_cfg, [f"seed={seed}"])
            model, tok = load_policy(source)
            base = evaluate(model.eval(), tok, cfg)["eval/accuracy"]
            target = args.target if args.target is not None else base + args.gain
            rl_cfg = override(cfg, [*args.ratiolab_set, f"run_dir={tmp}/ratiolab-{seed}"])
            order = ("ratiolab", "trl") if seed % 2 == 0 else ("trl", "ratiolab")
            row: dict[str, Any] = {"seed": seed, "base": base, "order": order}
            for side in order:
                t0 = time.perf_counter()
                curve = (run_ratiolab(rl_cfg, target, not args.full) if side == "ratiolab" else
                         run_trl(cfg, source, base, f"{tmp}/trl-{seed}", target, not args.full))
                row[side] = {
                    "step_wall": statistics.median(w for w, _ in curve.step_seconds),
                    "step_cpu": statistics.median(c for _, c in curve.step_seconds),
                    "mean_length": curve.mean_length, "split": curve.split, "evals": curve.evals,
                    "step_seconds": curve.step_seconds,
                }
                hit = time_to([list(e) for e in curve.evals], target)
                print(f"seed {seed} {side}: {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.2f}, base "
                      f"{base:.1%}, target {target:.1%}: " + (f"step {hit[0]}, {hit[1]:.1f} s wall, {hit[2]:.1f} s cpu"
                                                              if hit else "not reached"), flush=True)
            if seed == 0:
                ceiling = flop_ceiling(replace(rl_cfg, run_dir=f"{tmp}/ceiling"), source)
            seeds.append(row)
    a = base_cfg.algo
    settings = {
        "description": f"{base_cfg.task.name} {base_cfg.task.params}; {a.prompts_per_step} prompts x "
                       f"{a.samples_per_prompt} samples, <= {base_cfg.sampling.max_new_tokens} tokens, {a.minibatches} "
                       f"minibatches, lr {a.lr} (warm-up {a.warmup_steps}); {args.threads} thread(s) per side; eval "
                       f"on {base_cfg.eval_size} problems every {base_cfg.eval_every} steps, at most {steps} steps; "
                       f"ratiolab-only: {args.ratiolab_set or 'none'}; load {load_start[0]:.2f} -> "
                       f"{os.getloadavg()[0]:.2f}",
        "trl_version": version("trl"), "torch_version": torch.__version__, "steps": steps,
        "eval_every": base_cfg.eval_every, "eval_size": base_cfg.eval_size, "gain": args.gain, "gains": gains,
        "target": args.target, "threads": args.threads, "policy": str(source), "policy_seed": args.policy_seed,
        "overrides": args.set, "ratiolab_overrides": args.ratiolab_set, "stop_at_target": not args.full,
        "load_avg": [load_start[0], os.getloadavg()[0]],
    }
    report(settings, seeds, ceiling, gains, args.out)


def time_to(evals: list[list[float]], target: float) -> tuple[int, float, float] | None:
    """The first evaluation after step 0 at or above ``target`` (to float rounding): ``(step, wall, cpu)``."""
    return next(((int(st), w, c) for st, w, c, acc in evals if st > 0 and acc >= target - 1e-6), None)


def to_target(seeds: list[dict[str, Any]], gain: float, fixed: float | None) -> dict[str, Any]:
    """Per seed and side the steps, wall and CPU seconds to ``base + gain`` (or ``fixed``); medians; ratios."""
    per_seed = []
    for row in seeds:
        target = fixed if fixed is not None else row["base"] + gain
        entry: dict[str, Any] = {"seed": row["seed"], "base": row["base"], "target": target}
        for side in ("ratiolab", "trl"):
            hit = time_to(row[side]["evals"], target)
            entry[side] = dict(zip(("steps", "wall", "cpu"), hit, strict=True)) if hit else None
        per_seed.append(entry)
    median = {side: {k: median_or_none([e[side] and e[side][k] for e in per_seed]) for k in ("steps", "wall", "cpu")}
              for side in ("ratiolab", "trl")}
    ratio = {k: quotient(median["ratiolab"][k], median["trl"][k]) for k in ("steps", "wall", "cpu")}
    return {"gain": gain, "target": fixed, "per_seed": per_seed, "median": median, "ratio": ratio}


def quotient(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def report(settings: dict[str, Any], seeds: list[dict[str, Any]], ceiling: dict[str, Any], gains: list[float],
           out: Path) -> None:
    """Print the tables and write the JSON (``settings`` describe the run)."""
    print(settings["description"])
    steps = {side: {k: statistics.median(row[side][k] for row in seeds) for k in ("step_wall", "step_cpu")}
             for side in ("ratiolab", "trl")}
    print(f"{'seed':>4} {'side':<9}{'base':>7}{'s/step':>8}{'cpu/step':>9}{'resp len':>9}  accuracy every 20 steps")
    for row in seeds:
        for side in ("ratiolab", "trl"):
            r = row[side]
            accs = " ".join(f"{acc:.0%}" for st, _, _, acc in r["evals"] if st % 20 == 0)
            print(f"{row['seed']:>4} {side:<9}{row['base']:>7.1%}{r['step_wall']:>8.3f}{r['step_cpu']:>9.3f}"
                  f"{r['mean_length']:>9.2f}  {accs}")
    targets = []
    for gain in gains:
        t = to_target(seeds, gain, settings["target"])
        targets.append(t)
        name = f"target {t['target']:.1%}" if t["target"] is not None else f"target base + {gain:g}"
        print(f"{name}: steps / wall s / cpu s to it, evaluation excluded")
        for e in t["per_seed"]:
            cells = [f"{e[side]['steps']} / {e[side]['wall']:.1f} / {e[side]['cpu']:.1f}" if e[side] else "not reached"
                     for side in ("ratiolab", "trl")]
            print(f"  seed {e['seed']} ({e['target']:.1%}): ratiolab {cells[0]:<22} trl {cells[1]}")
        m, q = t["median"], t["ratio"]
        print("  median: " + "; ".join(f"{side} {fmt(m[side]['steps'], 'g')} / {fmt(m[side]['wall'], '.1f')} / "
                                      f"{fmt(m[side]['cpu'], '.1f')}" for side in m)
              + f"; ratiolab / TRL: steps {fmt(q['steps'], '.2f')}, wall {fmt(q['wall'], '.2f')}, "
                f"cpu {fmt(q['cpu'], '.2f')}")
    print("median step time ratiolab / TRL: "
          f"wall {steps['ratiolab']['step_wall'] / steps['trl']['step_wall']:.2f} "
          f"({steps['ratiolab']['step_wall']:.3f} / {steps['trl']['step_wall']:.3f} s), "
          f"cpu {steps['ratiolab']['step_cpu'] / steps['trl']['step_cpu']:.2f} "
          f"({steps['ratiolab']['step_cpu']:.3f} / {steps['trl']['step_cpu']:.3f} s)")
    split = {k: statistics.median(row["ratiolab"]["split"][k] for row in seeds) for k in ("generate", "score", "train")}
    print("ratiolab step split (median wall s): " + ", ".join(f"{k} {v:.3f}" for k, v in split.items()))
    if ceiling:
        print(f"FLOP ceiling of one step: {ceiling['gflop_total']:.2f} GFLOP ("
              + ", ".join(f"{k} {v:.2f}" for k, v in ceiling["gflop"].items())
              + f") at {ceiling['threads']} x one core's best GEMM rate {max(ceiling['gemm_gflops'].values()):.1f} "
              f"GFLOP/s: {ceiling['ceiling_seconds']:.3f} s "
              f"({ceiling['ceiling_seconds_without_score']:.3f} s without the scoring pass)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(settings | {"step_median": steps, "ratiolab_split": split, "to_target": targets,
                                          "flop_ceiling": ceiling, "seeds": seeds}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
