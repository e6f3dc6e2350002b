"""Over-optimisation of a learned reward model: RL against a noisy Bradley-Terry RM, the verifier as gold.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_rm_overopt.py [--steps 40 --noise 0.2]

1. the default pre-trained tiny arithmetic policy (cached, as ``ratiolab train`` makes it);
2. a reward model over its trunk (``ratiolab rm train`` defaults) on pairs with ``--noise`` label noise,
   its held-out pair accuracy;
3. GRPO for ``--steps`` steps against the RM (``reward.models``) and, as the reference, against the verifier,
   same seed and config; the RM run's reward (``reward/mean``), its gold (verifier) reward and their gap, and
   both runs' held-out greedy accuracy.
Prints a table and writes ``benchmarks/results/rm_overopt.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from ratiolab.config import override
from ratiolab.learner import TrainConfig, train
from ratiolab.policies.source import policy_source
from ratiolab.reward_model import RMTrainConfig, train_reward_model
from ratiolab.runs import RunDir


def _rows(run: Path) -> list[dict[str, Any]]:
    return list(RunDir.open(run).metrics())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    base = [f"steps={args.steps}", f"algo.prompts_per_step={args.prompts}", "eval_every=10", "eval_size=200",
            "checkpoint_every=1000", "threads=1", f"seed={args.seed}"]
    t0 = time.perf_counter()
    policy = policy_source(override(TrainConfig(), base), log=print)
    out: dict[str, Any] = {"args": vars(args), "policy": str(policy)}
    with TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        rm_cfg = RMTrainConfig(init=str(policy), label_noise=args.noise, seed=args.seed)
        (rm,) = train_reward_model(rm_cfg, tmp / "reward_model")
        out["rm"] = {"held_out_pair_accuracy": rm.eval_accuracy, "first_loss": rm.first_loss,
                     "final_loss": rm.final_loss, "seconds": rm.seconds}
        runs = {}
        for name, extra in (("rm", [f"reward.models=[{tmp / 'reward_model'}]"]), ("verifier", [])):
            cfg = override(TrainConfig(), [*base, f"policy.model={policy}", f"run_dir={tmp / name}", *extra])
            train(cfg, log=lambda _: None)
            runs[name] = _rows(tmp / name)
    out["seconds"] = time.perf_counter() - t0
    table = []
    for a, b in zip(runs["rm"], runs["verifier"], strict=True):
        if "eval/accuracy" in a or a["step"] % 5 == 0:
            table.append({"step": a["step"], "rm_reward": a.get("reward/mean"), "gold_reward": a.get("gold_reward"),
                          "gap": a.get("reward/gap"), "eval_acc_rm_run": a.get("eval/accuracy"),
                          "verifier_run_reward": b.get("reward/mean"), "eval_acc_verifier_run": b.get("eval/accuracy")})
    out["table"] = table
    print(f"reward model: held-out pair accuracy {rm.eval_accuracy:.3f} (label noise {args.noise}), loss "
          f"{rm.first_loss:.3f} -> {rm.final_loss:.3f}")
    cols = list(table[0])
    print(" | ".join(f"{c:>14}" for c in cols))
    for row in table:
        print(" | ".join(f"{'' if row[c] is None else round(row[c], 4):>14}" for c in cols))
    path = Path(__file__).parent / "results" / "rm_overopt.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
