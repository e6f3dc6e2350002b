"""Time every ratiolab.ope estimator on 1M logged rounds and check agreement with obp to 1e-9.

obp (e.g. 0.4.1) lives in a separate virtualenv, never in .venv; its python runs the obp side in a
subprocess (``--obp-python``, default $OBP_PYTHON or /tmp/obp-venv/bin/python; skipped if absent).
Writes benchmarks/results/ope.json.

    .venv/bin/python benchmarks/bench_ope.py [--rounds 1000000] [--repeats 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ratiolab.ope import bootstrap_ci, estimate
from ratiolab.ope.data import SyntheticBanditConfig, make_synthetic_feedback, policy_value, softmax_policy

RESULTS = Path(__file__).resolve().parent / "results" / "ope.json"
TOL = 1e-9

# name -> (ratiolab params, obp class name, obp constructor kwargs)
OBP_MAP: dict[str, tuple[dict[str, float], str, dict[str, float]]] = {
    "dm": ({}, "DirectMethod", {}),
    "ips": ({}, "InverseProbabilityWeighting", {}),
    "snips": ({}, "SelfNormalizedInverseProbabilityWeighting", {}),
    "dr": ({}, "DoublyRobust", {}),
    "sndr": ({}, "SelfNormalizedDoublyRobust", {}),
    "switch-dr": ({"lambda_": 5.0}, "SwitchDoublyRobust", {"threshold": 5.0}),
    "dros": ({"lambda_": 1.0}, "DoublyRobustWithShrinkage", {"lambda_": 1.0}),
}

OBP_SCRIPT = r"""
import dataclasses, json, sys, time
import numpy as np
import obp, obp.ope as ope
d = np.load(sys.argv[1])
spec = json.loads(sys.argv[2])
repeats = int(sys.argv[3])
base = dict(reward=d["reward"], action=d["action"], pscore=d["pscore"],
            action_dist=d["action_dist"][:, :, None], position=np.zeros(d["reward"].shape[0], dtype=int))
q = d["q_hat"][:, :, None]
out = {"version": obp.__version__, "results": {}}
for name, (cls_name, kwargs) in spec.items():
    cls = getattr(ope, cls_name)
    fields = {f.name for f in dataclasses.fields(cls)}
    if "threshold" in kwargs:  # Switch-DR: `tau` in obp 0.4, `lambda_` in 0.5
        kwargs = {("tau" if "tau" in fields else "lambda_"): kwargs["threshold"]}
    est = cls(**kwargs)
    args = dict(base)
    if cls_name == "DirectMethod":
        args = dict(action_dist=base["action_dist"], position=base["position"])
    if cls_name not in ("InverseProbabilityWeighting", "SelfNormalizedInverseProbabilityWeighting"):
        args["estimated_rewards_by_reg_model"] = q
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        value = est.estimate_policy_value(**args)
        best = min(best, time.perf_counter() - t)
    out["results"][name] = {"value": float(value), "seconds": best}
print(json.dumps(out))
"""


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def bandit_rows(n: int, repeats: int, tmp: Path) -> tuple[list[dict[str, Any]], Path]:
    fb = make_synthetic_feedback(SyntheticBanditConfig(n_rounds=n, n_actions=10, dim_context=5, seed=0))
    assert fb.expected_reward is not None and fb.pi_b is not None
    q = fb.expected_reward
    pi_e = softmax_policy(q, 3.0)
    q_hat = q + 0.05 * np.random.default_rng(1).standard_normal(q.shape)
    truth = policy_value(q, pi_e)
    data = dict(reward=fb.reward, action=fb.action, pscore=fb.pscore, action_dist=pi_e, q_hat=q_hat)
    path = tmp / "bandit.npz"
    np.savez(path, **data)  # type: ignore[arg-type]
    kw = dict(reward=fb.reward, action=fb.action, pscore=fb.pscore, action_dist=pi_e, estimated_rewards=q_hat)
    emb = np.arange(10) % 5
    extra: dict[str, dict[str, Any]] = {name: spec[0] for name, spec in OBP_MAP.items()}
    extra["dros-tuned"] = {}
    extra["mips"] = {"action_embed": emb[fb.action], "p_e_a": np.eye(5)[emb], "pi_b": fb.pi_b}
    rows = []
    for name, params in extra.items():
        est, secs = best_time(functools.partial(estimate, name, **kw, **params, n_bootstrap=0), repeats)
        rows.append(
            {"estimator": name, "kind": "bandit", "n": n, "value": est.value, "truth": truth, "seconds": secs}
        )
    values = fb.reward * pi_e[np.arange(n), fb.action] / fb.pscore
    _, secs = best_time(lambda: bootstrap_ci(values, n_bootstrap=100, seed=0), 1)
    rows.append({"estimator": "bootstrap_ci(100 resamples)", "kind": "bandit", "n": n, "seconds": secs})
    return rows, path


def trajectory_rows(n_traj: int, horizon: int, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(2)
    k = 4
    pi_b, pi_e = np.array([0.4, 0.3, 0.2, 0.1]), np.array([0.1, 0.2, 0.3, 0.4])
    mu = rng.uniform(0, 1, (horizon, k))
    action = (pi_b.cumsum() < rng.random((n_traj, horizon, 1))).sum(axis=2)
    reward = (rng.random((n_traj, horizon)) < mu[np.arange(horizon), action]).astype(float)
    gamma = 0.95
    truth = float((gamma ** np.arange(horizon) * (mu @ pi_e)).sum())
    kw: dict[str, Any] = dict(
        reward=reward,
        action=action,
        pscore=pi_b[action],
        action_dist=np.broadcast_to(pi_e, (n_traj, horizon, k)),
        estimated_rewards=np.broadcast_to(mu, (n_traj, horizon, k)),
        gamma=gamma,
    )
    marginal = (pi_e / pi_b)[action]
    rows = []
    for name in ("tis", "sntis", "pdis", "snpdis", "pd-dr", "snpd-dr", "sam-is", "sm-is"):
        params = (
            {"marginal_weight": marginal if name == "sam-is" else np.ones_like(marginal)}
            if "-is" in name
            else {}
        )
        est, secs = best_time(functools.partial(estimate, name, **kw, **params, n_bootstrap=0), repeats)
        rows.append(
            {
                "estimator": name,
                "kind": "trajectory",
                "n": n_traj * horizon,
                "value": est.value,
                "truth": truth,
                "seconds": secs,
            }
        )
    return rows


def run_obp(python: str, data: Path, repeats: int) -> dict[str, Any] | None:
    if not Path(python).exists():
        print(f"obp python {python} not found: skipping the agreement check", file=sys.stderr)
        return None
    spec = {name: (cls, kwargs) for name, (_, cls, kwargs) in OBP_MAP.items()}
    proc = subprocess.run(
        [python, "-c", OBP_SCRIPT, str(data), json.dumps(spec), str(repeats)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"obp subprocess failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--obp-python", default=os.environ.get("OBP_PYTHON", "/tmp/obp-venv/bin/python"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows, data = bandit_rows(args.rounds, args.repeats, Path(tmp))
        obp = run_obp(args.obp_python, data, args.repeats)
    rows += trajectory_rows(args.rounds // 10, 10, args.repeats)
    if obp is not None:
        for row in rows:
            ref = obp["results"].get(row["estimator"])
            if ref is not None:
                row.update(
                    obp_value=ref["value"],
                    obp_seconds=ref["seconds"],
                    abs_diff=abs(row["value"] - ref["value"]),
                )
                row["agrees"] = row["abs_diff"] <= TOL
    print(
        f"{'estimator':<28}{'kind':<12}{'n':>9}{'value':>11}{'truth':>9}{'ms':>9}{'obp ms':>9}{'|diff|':>10}"
    )
    for r in rows:
        cells = [
            f"{r['estimator']:<28}{r['kind']:<12}{r['n']:>9}",
            f"{r['value']:>11.6f}" if "value" in r else f"{'':>11}",
            f"{r['truth']:>9.4f}" if "truth" in r else f"{'':>9}",
            f"{1e3 * r['seconds']:>9.1f}",
            f"{1e3 * r['obp_seconds']:>9.1f}" if "obp_seconds" in r else f"{'-':>9}",
            f"{r['abs_diff']:>10.1e}" if "abs_diff" in r else f"{'-':>10}",
        ]
        print("".join(cells))
    summary = {
        "rounds": args.rounds,
        "repeats": args.repeats,
        "tolerance": TOL,
        "obp_version": None if obp is None else obp["version"],
        "all_agree": None if obp is None else all(r.get("agrees", True) for r in rows),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"obp agreement to {TOL}: {summary['all_agree']} (obp {summary['obp_version']}); wrote {args.out}")


if __name__ == "__main__":
    main()
