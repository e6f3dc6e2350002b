"""Async against sync at an equal sample budget, and the memory of the exact old-logit strategies.

    .venv/bin/python benchmarks/bench_async.py [--steps 12 --preset tiny]

1. samples/s of ``train`` with ``async_rl.enabled`` (max_staleness 1 and 2, snapshot, rollout actor in
   a child process and in a thread) against the synchronous loop on both cores, same config and
   number of steps (evaluation excluded from the clock);
2. weight copies and bytes held by ``snapshot`` (peak over the run) against ``old_logit_model``
   (one dedicated copy), at max_staleness 1, 2 and 4 (thread backend: ``old_logit_model`` scores
   inside the actor).
Prints a table and writes ``benchmarks/results/async.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from ratiolab.config import override
from ratiolab.learner import TrainConfig, train
from ratiolab.runs import RunDir


def _run(base: list[str], extra: list[str], tmp: Path, name: str) -> dict[str, Any]:
    cfg = override(TrainConfig(), [*base, f"run_dir={tmp / name}", *extra])
    t0 = time.perf_counter()
    res = train(cfg, log=lambda _: None)
    wall = time.perf_counter() - t0
    rows = [r for r in RunDir.open(res.run_dir).metrics() if r["step"] > 0]
    eval_s = sum(r.get("time/eval", 0.0) for r in rows)
    samples = cfg.steps * cfg.algo.prompts_per_step * cfg.algo.samples_per_prompt
    # steady state: the learner's step time after 5 warm-up steps (async: waiting for the actor included)
    producer = "time/wait" if cfg.async_rl.enabled else "time/generate"
    steady = statistics.fmean(r["time/score"] + r["time/train"] + r.get(producer, 0.0) for r in rows[5:])
    return {
        "name": name, "wall_s": wall, "eval_s": eval_s, "samples": samples,
        "samples_per_s": samples / max(wall - eval_s, 1e-9), "steady_step_s": steady,
        "max_staleness_seen": max((r.get("staleness/max", 0) for r in rows), default=0),
        "peak_copies": max((r.get("old_logits/peak_copies", r.get("old_logits/weight_copies", 0)) for r in rows),
                           default=0),
        "weight_bytes": max((r.get("old_logits/weight_bytes", 0) for r in rows), default=0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra TrainConfig overrides, e.g. task.name=guess (a generation-heavy multi-turn task)")
    ap.add_argument("--skip-memory", action="store_true", help="only the async-vs-sync rows")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "async.json")
    args = ap.parse_args()
    base = [f"policy.preset={args.preset}", f"steps={args.steps}", "eval_every=1000", "eval_size=16",
            "algo.prompts_per_step=16", "algo.samples_per_prompt=8", "sampling.engine_dtype=bfloat16", *args.set]
    rows = []
    with TemporaryDirectory() as tmp:
        train(override(TrainConfig(), [*base, "steps=1", f"run_dir={tmp}/warm"]), log=lambda _: None)  # pretrain cache
        rows.append(_run(base, [], Path(tmp), "sync"))
        for s in (1, 2):
            for backend in ("process", "threads"):
                rows.append(_run(base, ["async_rl.enabled=true", f"async_rl.max_staleness={s}",
                                        f"async_rl.backend={backend}"], Path(tmp), f"async s={s} snapshot {backend}"))
        for s in () if args.skip_memory else (1, 2, 4):
            for strategy in ("snapshot", "old_logit_model"):
                rows.append(_run(base, ["async_rl.enabled=true", f"async_rl.max_staleness={s}",
                                        "async_rl.backend=threads", f"async_rl.old_logits={strategy}",
                                        "async_rl.staleness_policy=wait"],
                                 Path(tmp), f"mem s={s} {strategy}"))
    sync, sync_step = rows[0]["samples_per_s"], rows[0]["steady_step_s"]
    print(f"{args.steps} steps, preset {args.preset}, overrides {args.set}")
    print(f"{'run':<32}{'samples/s':>10}{'x sync':>8}{'steady ms':>10}{'x sync':>8}{'stale max':>10}{'copies':>8}"
          f"{'MB':>8}")
    for r in rows:
        r["speedup_vs_sync"] = r["samples_per_s"] / sync
        r["steady_speedup_vs_sync"] = sync_step / r["steady_step_s"]
        print(f"{r['name']:<32}{r['samples_per_s']:>10.1f}{r['speedup_vs_sync']:>8.2f}{r['steady_step_s'] * 1e3:>10.0f}"
              f"{r['steady_speedup_vs_sync']:>8.2f}{r['max_staleness_seen']:>10}{r['peak_copies']:>8}"
              f"{r['weight_bytes'] / 2**20:>8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
