"""Side-by-side timing of the benchmarks on two source trees (e.g. a ``git worktree`` of an older commit).

    .venv/bin/python benchmarks/compare_revisions.py --before /tmp/perfbase --after . [--repeats 3 --only ope]

Each benchmark runs as a child process per tree (``PYTHONPATH=TREE/src``, ``OMP_NUM_THREADS=1``, cwd
``TREE``, so caches such as the pre-trained policy stay per tree), the two trees alternately ``--repeats``
times so that load drift on a shared machine hits both; the median per metric is kept. Each tree runs its
own copy of the benchmark script (the scripts differ only in import paths between revisions) with the
small settings below, except two snippets that import only names both trees have: ``objectives``
(``bench_objectives.py``'s workload; that script times names an older tree rejects) and ``trl`` (the
ratiolab half of ``bench_trl.py``, the demo's RL step of sample + score + update at 16 prompts; the TRL
half needs the ``trl`` package). Not compared: ``mujoco`` (the ``mujoco`` extra, hours per run), ``gym``
(compared elsewhere), ``support`` (a bias of a feature the older tree lacks). ``ratio`` is after / before
in time (a rate's inverse), so > 1 is slower after; ``spread`` is the larger (max - min) / median of the
two sides, the noise to read the ratio against; memory (``rss``) compares the same way. Prints a table,
writes ``benchmarks/results/compare_revisions.json`` after each benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: metric name -> (value, "time" | "rate" | "info"); a rate's time ratio is before / after, an info row has none.
Metrics = dict[str, tuple[float, str]]

# bench_objectives.py's workload (its batch, forward + backward of ``compute``, whose default validates the
# inputs in both trees); an objective that needs other inputs (scores, Gaussian steps) is skipped. The script
# itself cannot run on older trees: it times every registered name, some of which reject token data.
# Clocked in process CPU time (one thread): on a shared, oversubscribed machine wall time mostly measures
# the other jobs at this size (a few ms per call).
OBJECTIVES_SNIPPET = r"""
import json, sys, time, torch
from ratiolab.objectives import compute, names
from ratiolab.types import PolicyLossInputs
b, t, repeats = (int(a) for a in sys.argv[1:4])
g = torch.Generator().manual_seed(0)
logp = -torch.rand(b, t, generator=g) * 3
data = {"logp": logp, "prox_logp": logp + 0.1 * torch.randn(b, t, generator=g),
        "behav_logp": logp + 0.1 * torch.randn(b, t, generator=g), "adv": torch.randn(b, t, generator=g),
        "mask": (torch.rand(b, t, generator=g) < 0.9).float()}
def bare():
    lp = data["logp"].clone().requires_grad_()
    r = torch.exp(lp - data["prox_logp"])
    loss = torch.maximum(-data["adv"] * r, -data["adv"] * r.clamp(0.8, 1.2))
    ((loss * data["mask"]).sum() / data["mask"].sum()).backward()
def run(name):
    lp = data["logp"].clone().requires_grad_()
    compute(name, PolicyLossInputs(**{**data, "logp": lp})).loss.backward()
def clock(fn):
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1e3
out = {"bare ppo (reference)": clock(bare)}
for n in names():
    try:
        run(n)
    except (ValueError, TypeError):
        continue
    out[n] = clock(lambda: run(n))
print(json.dumps(out))
"""

TRL_SNIPPET = r"""
import json, statistics, sys, tempfile
from ratiolab.config import override
from ratiolab.learner import TrainConfig, train
from ratiolab.learner.demo import DEMO_SETTINGS
from ratiolab.runs import RunDir
steps = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    cfg = override(TrainConfig(), [*DEMO_SETTINGS, f"steps={steps}", "eval_every=100000", "eval_size=16",
                                   "algo.prompts_per_step=16", "policy.pretrain_steps=50", f"run_dir={tmp}/run"])
    rows = [r for r in RunDir.open(train(cfg, log=lambda _: None).run_dir).metrics() if r["step"] > 1]
out = {k: statistics.median(r[f"time/{k}"] for r in rows) for k in ("generate", "score", "train")}
print(json.dumps(out | {"response_length": statistics.fmean(r["response/length"] for r in rows)}))
"""


@dataclass(frozen=True)
class Bench:
    """One benchmark: how to run it in a tree and which numbers to read from its output."""

    name: str
    command: Callable[[Path, Path], list[str]]  # (tree, json_out) -> argv after the python executable
    read: Callable[[Any], Metrics]
    stdout_json: bool = False  # the last stdout line is the JSON (else the file at json_out)
    default_out: str = ""  # where a script without ``--out`` writes (in the tree: overwritten there)


def _script(name: str, *args: str) -> Callable[[Path, Path], list[str]]:
    """``benchmarks/NAME ARGS --out JSON`` (``--out`` left off where that tree's script has no such flag)."""
    def argv(tree: Path, path: Path) -> list[str]:
        script = tree / "benchmarks" / name
        has_out = not script.exists() or '"--out"' in script.read_text()
        return [str(script), *args, *(["--out", str(path)] if has_out else [])]
    return argv


def _objectives(d: Any) -> Metrics:
    return {f"{name} cpu ms": (ms, "time") for name, ms in d.items()}


def _learner(d: Any) -> Metrics:
    out: Metrics = {}
    for r in d["rows"]:
        p = r["preset"]
        out |= {f"{p} learner tok/s": (r["learner_tok_s"], "rate"), f"{p} bare tok/s": (r["bare_tok_s"], "rate"),
                f"{p} rss MiB": (r["rss_mib"], "time")}
    return out


def _backend(d: Any) -> Metrics:
    return {f"{mode} {half}/s": (v, "rate") for mode, r in d.items() for half, v in r.items() if half != "combined"}


def _async(d: Any) -> Metrics:
    out: Metrics = {}
    for r in d:
        out |= {f"{r['name']} samples/s": (r["samples_per_s"], "rate"),
                f"{r['name']} steady step s": (r["steady_step_s"], "time")}
    return out


def _ope(d: Any) -> Metrics:
    return {f"{r['estimator']} ({r['kind']}) s": (r["seconds"], "time") for r in d["rows"]}


def _sampler(d: Any) -> Metrics:
    return {f"{r['dtype']} {r['backend']} tok/s": (r["tokens_per_s"], "rate") for r in d["rows"]}


def _trl(d: Any) -> Metrics:
    length = d.pop("response_length")  # the work per step: the two trees' policies may answer at other lengths
    return {f"demo step {k} s": (v, "time") for k, v in d.items()} | {
        "demo step total s": (sum(d.values()), "time"), "response length (work, not timed)": (length, "info")}


BENCHES = [
    Bench("objectives", lambda tree, path: ["-c", OBJECTIVES_SNIPPET, "64", "256", "100"], _objectives,
          stdout_json=True),
    Bench("learner", _script("bench_learner.py", "--presets", "tiny", "--prompts", "8", "--repeats", "3",
                             "--threads", "1", "--no-demo"), _learner),
    Bench("trl", lambda tree, path: ["-c", TRL_SNIPPET, "5"], _trl, stdout_json=True),
    Bench("async", _script("bench_async.py", "--steps", "7", "--preset", "tiny", "--skip-memory",
                           "--set", "policy.pretrain_steps=50"), _async),
    Bench("ope", _script("bench_ope.py", "--rounds", "100000", "--repeats", "3", "--obp-python", "/nonexistent"),
          _ope, default_out="benchmarks/results/ope.json"),
    Bench("backend", _script("bench_backend.py", "--seconds", "3", "--preset", "tiny"), _backend),
    Bench("sampler", _script("bench_sampler.py", "--preset", "tiny", "--batch", "8", "--new-tokens", "8",
                             "--repeats", "2", "--threads", "1"), _sampler),
]


def run_once(bench: Bench, tree: Path, timeout: float) -> Metrics:
    """One run of ``bench`` on ``tree``: its metrics (raises on a failed run)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        argv = [sys.executable, *bench.command(tree, path)]
        proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{bench.name} on {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        if bench.stdout_json:
            data = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            data = json.loads((path if path.exists() else tree / bench.default_out).read_text())
    return bench.read(data)


def _median(runs: list[Metrics], key: str) -> tuple[float | None, float | None, str]:
    vals = [m[key][0] for m in runs if key in m]
    if not vals:
        return None, None, ""
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / med if med else 0.0
    return med, spread, next(m[key][1] for m in runs if key in m)


def compare(before: Path, after: Path, benches: list[Bench], repeats: int, timeout: float,
            done: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Alternate the trees ``repeats`` times per benchmark; one row per metric (``done(rows)`` after each)."""
    rows: list[dict[str, Any]] = []
    for bench in benches:
        runs: dict[str, list[Metrics]] = {"before": [], "after": []}
        t0 = time.perf_counter()
        for rep in range(repeats):
            order = [("before", before), ("after", after)] if rep % 2 == 0 else [("after", after), ("before", before)]
            for side, tree in order:
                try:
                    runs[side].append(run_once(bench, tree, timeout))
                except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as err:
                    print(f"# {bench.name} on {side}: {str(err)[-600:]}", file=sys.stderr, flush=True)
        keys = list(dict.fromkeys([k for m in runs["after"] + runs["before"] for k in m]))
        for key in keys:
            b, sb, kind = _median(runs["before"], key)
            a, sa, kind_a = _median(runs["after"], key)
            kind = kind or kind_a
            ratio = None if kind == "info" or not a or not b else (a / b if kind == "time" else b / a)
            spreads = [s for s in (sb, sa) if s is not None]
            rows.append({"benchmark": bench.name, "metric": key, "kind": kind, "before": b, "after": a,
                         "ratio": ratio, "spread": max(spreads) if spreads else None,
                         "before_runs": [m[key][0] for m in runs["before"] if key in m],
                         "after_runs": [m[key][0] for m in runs["after"] if key in m]})
        print(f"# {bench.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        done(rows)
    return rows


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="source tree of the older revision")
    ap.add_argument("--after", type=Path, required=True, help="source tree of the newer revision")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(b.name for b in BENCHES)} "
                    "(replaces only their rows in an existing --out)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark run")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compare_revisions.json")
    args = ap.parse_args()
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    before, after = args.before.resolve(), args.after.resolve()
    meta = {"before": str(args.before), "after": str(args.after), "repeats": args.repeats,
            "commands": {b.name: b.command(Path("TREE"), Path("OUT.json")) for b in BENCHES},
            "load_avg_start": os.getloadavg()}

    names = {b.name for b in chosen}
    kept = []  # with --only, the other benchmarks' rows of an earlier run stay in the JSON
    if args.only and args.out.exists():
        kept = [r for r in json.loads(args.out.read_text())["rows"] if r["benchmark"] not in names]

    def write(rows: list[dict[str, Any]]) -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        order = {b.name: i for i, b in enumerate(BENCHES)}
        merged = sorted(kept + rows, key=lambda r: order[r["benchmark"]])
        args.out.write_text(json.dumps({"meta": meta | {"load_avg_end": os.getloadavg()}, "rows": merged}, indent=1))

    rows = compare(before, after, chosen, args.repeats, args.timeout, write)
    print(f"{'benchmark':<12}{'metric':<44}{'before':>12}{'after':>12}{'ratio':>8}{'spread':>8}")
    for r in rows:
        print(f"{r['benchmark']:<12}{r['metric'][:43]:<44}{_fmt(r['before'], '12.5g')}{_fmt(r['after'], '12.5g')}"
              f"{_fmt(r['ratio'], '8.3f')}{_fmt(r['spread'], '8.2f')}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
