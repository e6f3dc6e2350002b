"""Sampler throughput: ratiolab's decode loops vs ``model.generate`` on the same model and batch.

Precisions: ``fp32``; ``bf16`` (bf16 weights and compute); ``bf16w-fp32`` (bf16-rounded weights,
fp32 compute — the engine's ``compute_dtype`` option for CPUs without bf16 matmul units).
Tokens/s counts sampled response tokens (EOS included); ``warmup_s`` is the first call's time
(``compiled`` pays its ``torch.compile`` there; inductor's on-disk cache shortens it in later
processes). Achieved GFLOP/s uses ~2 * params FLOPs per token and is reported as a fraction of
this machine's matmul ceiling (about 180 GFLOP/s fp32, 430 GFLOP/s bf16 on 2 cores). Runs are
interleaved across backends and the median is kept, since the machine is shared. Writes
benchmarks/results/sampler.json (preset base) or sampler_<preset>.json, unless ``--out`` is given.

    python benchmarks/bench_sampler.py [--preset base] [--batch 64] [--new-tokens 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ratiolab import tasks
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.policies import build_policy, n_params

CEILING_GFLOPS = {"fp32": 180.0, "bf16": 430.0, "bf16w-fp32": 180.0}
PRECISIONS = {  # name -> (weight dtype, compute dtype)
    "fp32": (torch.float32, torch.float32),
    "bf16": (torch.bfloat16, torch.bfloat16),
    "bf16w-fp32": (torch.bfloat16, torch.float32),
}
BACKENDS = ("compiled", "fused", "loop", "generate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="JSON path (default: results/sampler.json, or sampler_<preset>.json)")
    args = parser.parse_args()
    name = "sampler.json" if args.preset == "base" else f"sampler_{args.preset}.json"
    torch.set_num_threads(args.threads)

    model, tokenizer = build_policy(args.preset, seed=0)
    params = n_params(model)
    prompts = [p.prompt for p in tasks.get("arithmetic", level=5).sample(args.batch, seed=0)]
    sampling = SamplingParams(temperature=1.0, max_new_tokens=args.new_tokens)
    rows: list[dict[str, Any]] = []
    for dtype_name, (dtype, compute) in PRECISIONS.items():
        engines = {
            b: HFEngine(model, tokenizer, dtype=dtype, compute_dtype=compute, backend=b)  # type: ignore[arg-type]
            for b in BACKENDS
        }
        times: dict[str, list[float]] = {b: [] for b in BACKENDS}
        tokens: dict[str, list[float]] = {b: [] for b in BACKENDS}
        warmup: dict[str, float] = {}
        for backend, engine in engines.items():
            start = time.perf_counter()
            engine.generate(prompts, sampling, seed=0)
            warmup[backend] = time.perf_counter() - start
        for rep in range(args.repeats):
            for backend, engine in engines.items():
                start = time.perf_counter()
                rollout = engine.generate(prompts, sampling, seed=rep)
                times[backend].append(time.perf_counter() - start)
                tokens[backend].append(float(rollout.mask.sum()))
        for backend in BACKENDS:
            rates = [n / t for n, t in zip(tokens[backend], times[backend], strict=True)]
            rate = statistics.median(rates)
            gflops = 2 * params * rate / 1e9
            rows.append({
                "dtype": dtype_name, "backend": backend, "tokens_per_s": rate, "warmup_s": warmup[backend],
                "gflops": gflops, "ceiling_fraction": gflops / CEILING_GFLOPS[dtype_name],
            })
        base = next(r["tokens_per_s"] for r in rows if r["dtype"] == dtype_name and r["backend"] == "generate")
        for r in rows:
            if r["dtype"] == dtype_name:
                r["speedup_vs_generate"] = r["tokens_per_s"] / base

    print(f"preset={args.preset} params={params} batch={args.batch} new_tokens={args.new_tokens} "
          f"threads={args.threads} load={os.getloadavg()[0]:.1f}")
    print(f"{'dtype':10} {'backend':9} {'tok/s':>9} {'GFLOP/s':>8} {'%ceil':>6} {'x generate':>10} {'warm-up s':>9}")
    for r in rows:
        print(f"{r['dtype']:10} {r['backend']:9} {r['tokens_per_s']:9.0f} {r['gflops']:8.2f} "
              f"{100 * r['ceiling_fraction']:6.2f} {r['speedup_vs_generate']:10.2f} {r['warmup_s']:9.1f}")
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"preset": args.preset, "params": params, "batch": args.batch, "new_tokens": args.new_tokens,
            "threads": args.threads, "repeats": args.repeats, "load_avg_1m": os.getloadavg()[0]}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
