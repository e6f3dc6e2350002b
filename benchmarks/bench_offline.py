"""Offline learners on ratiolab's own Pendulum-v1 datasets: TD3+BC, IQL and PRDC against the dataset.

A gym source run (``--source``, or off-policy MDPO trained here for ``--train-steps``) gives the
expert and medium checkpoints; ``ratiolab data collect`` makes each ``--kinds`` dataset from it, and every
``--algos`` learner trains ``--steps`` gradient steps on it. The table reports the dataset's mean episode
return, the final deterministic return (``--episodes`` episodes) and the normalised score (the uniform
policy's return = 0, the expert checkpoint's = 100; docs/methods/offline.md §13). These are not D4RL
numbers (§11): the data differ.

    .venv/bin/python benchmarks/bench_offline.py [--source RUN --kinds medium --algos td3bc,iql,prdc
        --steps 10000 --hidden 64 --seed 0 --work DIR]

Writes ``benchmarks/results/offline.json``. Not part of CI: a few CPU-minutes per learner.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ratiolab.offline.collect import CollectConfig, collect
from ratiolab.offline.dataset import read_dataset
from ratiolab.offline.learners import LearnerConfig
from ratiolab.offline.train import OfflineTrainConfig, normalised_score, train
from ratiolab.runs import RunDir, atomic_write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="", help="gym run with checkpoints (default: train one under --work)")
    ap.add_argument("--train-steps", type=int, default=15_000)
    ap.add_argument("--kinds", default="medium")
    ap.add_argument("--algos", default="td3bc,iql,prdc")
    ap.add_argument("--data-steps", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/bench-offline")
    args = ap.parse_args()
    work = Path(args.work)
    rows: list[dict[str, Any]] = []
    for kind in args.kinds.split(","):
        out = work / f"pendulum-{kind}"
        if not out.exists():
            collect(CollectConfig(env_id="Pendulum-v1", policy=kind, steps=args.data_steps, seed=args.seed,
                                  source=args.source, train_steps=args.train_steps), out)
        data = read_dataset(out)
        data_mean = float(data.episode_returns().mean())
        for algo in args.algos.split(","):
            cfg = OfflineTrainConfig(algo=algo, data=str(out), steps=args.steps, seed=args.seed, eval_every=0,
                                     eval_episodes=args.episodes, learner=LearnerConfig(hidden=[args.hidden] * 2))
            res = train(cfg, None)
            rows.append({"dataset": kind, "algo": algo, "dataset_return": data_mean,
                         "dataset_score": normalised_score(data_mean, data.meta.ref_returns),
                         "return": float(np.mean(res.returns)), "score": res.score, "ref": data.meta.ref_returns})
            r = rows[-1]
            print(f"{kind:14s} {algo:6s} dataset {r['dataset_return']:8.1f} ({r['dataset_score']:5.1f})  "
                  f"learned {r['return']:8.1f} ({r['score']:5.1f})", flush=True)
    shown = {k: v for k, v in vars(args).items() if k not in ("source", "work")}  # local paths stay out
    src = RunDir.open(read_dataset(work / f"pendulum-{args.kinds.split(',')[0]}").meta.source).config()
    shown["source_run"] = {k: src[k] for k in ("env_id", "algo", "seed", "total_steps")}
    result = {"args": shown, "machine": platform.processor() or platform.machine(), "rows": rows}
    dest = Path(__file__).parent / "results" / "offline.json"
    atomic_write_text(dest, json.dumps(result, indent=1))
    print(f"written: {dest}")


if __name__ == "__main__":
    main()
