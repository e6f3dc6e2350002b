"""Ratio objectives on the per-step Gaussian ratios of a flow policy: the 2-D conditional toy.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_flow.py [--seeds 3 --iters 60]

For each variant and seed: a fresh ``FlowPolicy`` (K = 5, sigma = 0.5), optionally warm-started by
conditional flow matching, trained by ``ratiolab.flow.toy.train``; reports the evaluation reward
(256 samples, fixed noise) before and after, the first iteration whose batch mean reward exceeds
-0.8, and the wall time. Prints a table and writes ``benchmarks/results/flow.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ratiolab.flow import FlowPolicy, toy

TARGET = -0.8
VARIANTS: dict[str, dict[str, Any]] = {
    "ppo": {"objective": "ppo"},
    "grpo_guard eps=0.2": {"objective": "grpo_guard", "clip_low": 0.2, "clip_high": 0.2},
    "grpo_guard eps=0.2 no ratio_norm (= ppo)": {"objective": "grpo_guard", "clip_low": 0.2, "clip_high": 0.2,
                                         "ratio_norm": False},
    "grpo_guard default eps, 1 epoch": {"objective": "grpo_guard", "epochs": 1},
    "cfm warm start + grpo_guard eps=0.2": {"objective": "grpo_guard", "clip_low": 0.2, "clip_high": 0.2,
                                            "warm": True},
}


def _run(variant: dict[str, Any], seed: int, iters: int) -> dict[str, Any]:
    v = dict(variant)
    warm = v.pop("warm", False)
    torch.manual_seed(seed)
    centres, policy = toy.modes(), FlowPolicy(2, 4)
    t0 = time.perf_counter()
    if warm:
        toy.warm_start(policy, centres, iters=100, seed=seed)
    before = toy.evaluate(policy, centres)
    history = toy.train(policy, centres, v.pop("objective"), iters=iters, seed=seed, **v)
    wall = time.perf_counter() - t0
    hit = next((i for i, r in enumerate(history) if r > TARGET), None)
    return {"seed": seed, "before": before, "after": toy.evaluate(policy, centres), "iters_to_target": hit,
            "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "flow.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'variant':40s} {'before':>7s} {'after':>7s} {'iters to ' + str(TARGET):>14s} {'wall s':>7s}")
    for name, variant in VARIANTS.items():
        runs = [_run(variant, s, args.iters) for s in range(args.seeds)]
        hits = [r["iters_to_target"] for r in runs]
        row = {"variant": name, "runs": runs,
               "before_mean": statistics.fmean(r["before"] for r in runs),
               "after_mean": statistics.fmean(r["after"] for r in runs),
               "wall_s_mean": statistics.fmean(r["wall_s"] for r in runs)}
        rows.append(row)
        hit_s = ",".join("-" if h is None else str(h) for h in hits)
        print(f"{name:40s} {row['before_mean']:7.3f} {row['after_mean']:7.3f} {hit_s:>14s} {row['wall_s_mean']:7.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"iters": args.iters, "seeds": args.seeds, "target": TARGET, "rows": rows},
                                   indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
