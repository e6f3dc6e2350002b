"""``ratiolab sweep``: objective x max_staleness x old_logits x seeds, one table, the claims and one report.

Every cell is an asynchronous run (``async_rl.enabled``) of the base config with the cell's
objective, staleness bound and old-logit strategy. Per cell the table gives the held-out ``metric``
(greedy ``accuracy``, or ``pass1`` over ``eval_samples`` samples per problem) of the base and after
training, the gain, each as a mean over seeds with its 95 % t-interval, the area under the metric's
curve (mean over the evaluations, base included), how many seeds collapsed (final more than
``collapse_drop`` below the base), the final policy entropy, the largest staleness a trained token had (a
short run whose actor is slow never reaches a high ``max_staleness``) and the CPU and wall time per run.
Cells run in ``workers`` processes; the pre-trained base of each seed is made first (one job per seed),
so cells never race to pre-train it.

Cells that would repeat a run are merged: an objective that binds its old-logit strategy
(``ppo_ewma``, ``ppo_ewma_original``) runs only with that strategy, and at ``max_staleness`` 0 the
strategies of :data:`SAME_AT_ZERO` coincide (every token is scored by the weights that made it,
the current ones), so only the first of them listed runs. ``behavior`` is not merged at 0: it takes
``prox_logp`` from the engine, so it differs from the others by the training-inference mismatch
(``w_disc``). Each merged cell is announced before the sweep starts, listed under ``merged`` in
``sweep.json`` and, in the claims, stands for the run that stands for it.

Claims (:class:`Claim`, :func:`default_claims`) are paired contrasts of cells: the same seed shares its
pre-trained base and its evaluation problems, so a claim's effect is a sum of cell values per seed. A
claim about one objective has one unit per seed; a pooled claim (an old-logit or staleness contrast over
all objectives) has one unit per objective, the mean of its per-seed effects. Each claim reports the mean
effect with its 95 % t-interval, the paired t-test and exact sign-test p-values, and a verdict
(:func:`ratiolab.eval.stats.verdict`): held, did not hold, or cannot be told apart at this scale.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from ratiolab.config import ConfigError, from_dict, override, to_dict
from ratiolab.config.async_rl import bound_strategy
from ratiolab.config.train import TrainConfig
from ratiolab.eval.stats import Interval, Verdict, paired_t_p, sign_test_p, t_interval, verdict
from ratiolab.learner.train import train
from ratiolab.policies.source import policy_source
from ratiolab.report import Comparison, compare_runs
from ratiolab.runs import RunDir, atomic_write_text

#: Old-logit strategies that all give ``prox_logp`` = the current weights when ``max_staleness`` is 0.
SAME_AT_ZERO = frozenset({"recompute", "snapshot", "old_logit_model", "sync_interrupt"})
#: The held-out metrics a sweep can rank by, and the metrics.jsonl key of each.
METRICS = {"accuracy": "eval/accuracy", "pass1": "eval/pass1"}
#: The folder of the sweep's ``ratiolab compare`` page, every run overlaid per panel.
COMPARE = "runs"
#: The per-step timers summed into a run's time split.
TIMERS = ("time/generate", "time/score", "time/train", "time/wait", "time/eval")


#: ``(objective, max_staleness, old_logits, seed)``
Cell = tuple[str, int, str, int]


@dataclass(frozen=True)
class SweepConfig:
    """The grid; ``base`` is the TrainConfig every cell starts from. ``metric``: what the table and the
    claims compare (``pass1`` needs ``base.eval_samples`` > 0); ``min_effect``: the smallest effect of
    practical size, below which a claimed gain counts as not held (:func:`ratiolab.eval.stats.verdict`)."""

    base: TrainConfig
    objectives: tuple[str, ...] = ("ppo",)
    max_staleness: tuple[int, ...] = (0, 2, 8)
    old_logits: tuple[str, ...] = ("snapshot", "recompute")
    seeds: tuple[int, ...] = (0,)
    workers: int = 1
    out_dir: str = "runs/sweep"
    collapse_drop: float = 0.1
    metric: Literal["accuracy", "pass1"] = "accuracy"
    min_effect: float = 0.02

    def runs_of(self) -> dict[Cell, Cell]:
        """Every cell of the grid and the run that stands for it (itself, or the run it is merged into;
        see the module docstring)."""
        zero = next((x for x in self.old_logits if x in SAME_AT_ZERO), None)
        out: dict[Cell, Cell] = {}
        for cell in product(self.objectives, self.max_staleness, self.old_logits, self.seeds):
            objective, staleness, old_logits, seed = cell
            strategy = bound_strategy(objective) or old_logits
            if staleness == 0 and strategy in SAME_AT_ZERO and zero is not None:
                strategy = zero
            out[cell] = (objective, staleness, strategy, seed)
        return out

    def cells(self) -> list[Cell]:
        """The distinct runs of the grid, in grid order."""
        return list(dict.fromkeys(self.runs_of().values()))

    def merged(self) -> dict[Cell, Cell]:
        """The grid cells that do not run themselves, each with the run that stands for it."""
        return {cell: run for cell, run in self.runs_of().items() if cell != run}

    def cell_config(self, objective: str, staleness: int, old_logits: str, seed: int) -> TrainConfig:
        name = f"{objective}-s{staleness}-{old_logits}-seed{seed}"
        return override(self.base, [
            "async_rl.enabled=true", f"async_rl.max_staleness={staleness}", f"async_rl.old_logits={old_logits}",
            f"algo.objective={objective}", f"seed={seed}", f"run_dir={Path(self.out_dir) / name}",
        ])

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"sweep workers = {self.workers} must be >= 1")
        if self.metric not in METRICS:
            raise ConfigError(f"sweep metric = {self.metric!r} is not one of {list(METRICS)}")
        if self.metric == "pass1" and self.base.eval_samples < 1:
            raise ConfigError("sweep metric = pass1 needs samples per held-out problem: set eval_samples=K (K >= 1)")
        if not self.min_effect >= 0:
            raise ConfigError(f"sweep min_effect = {self.min_effect} must be >= 0")
        if not self.cells():
            raise ConfigError("the sweep grid is empty: give at least one objective, staleness, strategy and seed")
        for cell in self.cells():
            self.cell_config(*cell).validate()


def _run_cell(job: tuple[dict[str, Any], str]) -> dict[str, Any]:
    """One cell, in a worker process (single-threaded torch so workers do not oversubscribe)."""
    torch.set_num_threads(1)
    cfg_dict, metric = job
    cfg = from_dict(TrainConfig, cfg_dict)
    t0, c0 = time.perf_counter(), time.process_time()
    res = train(cfg, log=lambda _: None)
    rows = RunDir.open(res.run_dir).metrics()
    key = METRICS[metric]
    curve = [(r["step"], r[key]) for r in rows if key in r]
    entropy = [r["entropy"] for r in rows if "entropy" in r]
    return {
        "run_dir": str(res.run_dir), "base": curve[0][1], "final": curve[-1][1],
        "base_accuracy": res.base_accuracy, "final_accuracy": res.final_accuracy,
        "base_pass1": res.base_pass1, "final_pass1": res.final_pass1,
        "auc": statistics.fmean(v for _, v in curve), "final_entropy": entropy[-1] if entropy else math.nan,
        "wall_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
        "timers": {k: sum(r.get(k, 0.0) for r in rows) for k in TIMERS},
        "max_staleness_seen": max((r.get("staleness/max", 0) for r in rows), default=0),
        "curve": curve,
    }


def _pretrain(cfg_dict: dict[str, Any]) -> float:
    """Make (or find) the cached pre-trained base of one seed; its CPU seconds."""
    torch.set_num_threads(1)
    c0 = time.process_time()
    policy_source(from_dict(TrainConfig, cfg_dict), log=lambda _: None)
    return time.process_time() - c0


def _map(fn: Callable[[Any], Any], jobs: list[Any], workers: int, labels: Sequence[str],
         progress: Callable[[str], None]) -> list[Any]:
    if workers == 1:
        out = []
        for label, job in zip(labels, jobs, strict=True):
            progress(label)
            out.append(fn(job))
        return out
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(fn, jobs))


def run_sweep(cfg: SweepConfig, progress: Callable[[str], None] = print) -> Path:
    """Run the grid; write ``sweep.json``, ``table.md``, ``claims.md``, the plots, ``report.html`` and
    ``runs/report.html`` (every run overlaid per panel, :func:`ratiolab.report.compare_runs`) in ``out_dir``."""
    cfg.validate()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = cfg.cells()
    merged = cfg.merged()
    for cell, run in merged.items():
        progress(f"cell {cell} is the same run as {run}: merged (not run twice)")
    t0 = time.perf_counter()
    first = {seed: next(c for c in cells if c[3] == seed) for seed in cfg.seeds}
    pre = _map(_pretrain, [to_dict(cfg.cell_config(*c)) for c in first.values()], cfg.workers,
               [f"pre-training the base of seed {s}" for s in first], progress)
    pretrain_wall = time.perf_counter() - t0
    jobs = [(to_dict(cfg.cell_config(*c)), cfg.metric) for c in cells]
    results = _map(_run_cell, jobs, cfg.workers, [f"cell {c}" for c in cells], progress)
    records = [dict(zip(("objective", "max_staleness", "old_logits", "seed"), c, strict=True)) | r
               for c, r in zip(cells, results, strict=True)]
    timing = {"runs": len(cells), "merged_cells": len(merged), "workers": cfg.workers,
              "pretrain_cpu_seconds": dict(zip(map(str, first), pre, strict=True)),
              "pretrain_wall_seconds": pretrain_wall, "wall_seconds": time.perf_counter() - t0}
    claims = [r for c in default_claims(cfg) if (r := evaluate_claim(c, cfg, records)) is not None]
    atomic_write_text(out / "sweep.json", json.dumps({
        "grid": {k: v for k, v in to_dict(cfg).items() if k != "base"}, "base": to_dict(cfg.base),
        "timing": timing, "cells": records, "merged": [[list(c), list(r)] for c, r in merged.items()],
        "claims": [c.to_dict() for c in claims]}, indent=1))
    table = summary_table(records, cfg.collapse_drop, cfg.metric) + "\n" + timing_line(records, timing)
    atomic_write_text(out / "table.md", table)
    atomic_write_text(out / "claims.md", claims_table(claims, cfg.min_effect))
    _plots(records, claims, cfg.metric, out)
    runs = compare_runs([r["run_dir"] for r in records], out / COMPARE, title="ratiolab sweep: every run overlaid")
    _html(out, table, claims_table(claims, cfg.min_effect), runs)
    return out


def summary_table(records: list[dict[str, Any]], collapse_drop: float, metric: str = "accuracy") -> str:
    """Markdown table aggregated over seeds: means with their 95 % t-intervals (``mean [lo, hi]``)."""
    keys = sorted({(r["objective"], r["max_staleness"], r["old_logits"]) for r in records})
    lines = [f"| objective | max_staleness | old_logits | seeds | base {metric} | final {metric} | gain | AUC | "
             "collapses | final entropy | staleness seen | CPU s | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for obj, s, ol in keys:
        rs = [r for r in records if (r["objective"], r["max_staleness"], r["old_logits"]) == (obj, s, ol)]
        collapses = sum(r["final"] < r["base"] - collapse_drop for r in rs)
        lines.append(
            f"| {obj} | {s} | {ol} | {len(rs)} | {statistics.fmean(r['base'] for r in rs):.3f} | "
            f"{t_interval([r['final'] for r in rs]).fmt()} | "
            f"{t_interval([r['final'] - r['base'] for r in rs]).fmt()} | "
            f"{statistics.fmean(r['auc'] for r in rs):.3f} | {collapses}/{len(rs)} | "
            f"{statistics.fmean(r['final_entropy'] for r in rs):.3f} | "
            f"{max(r.get('max_staleness_seen', math.nan) for r in rs):g} | "
            f"{statistics.fmean(r.get('cpu_seconds', math.nan) for r in rs):.1f} | "
            f"{statistics.fmean(r['wall_seconds'] for r in rs):.1f} |"
        )
    return "\n".join(lines) + "\n"


def timing_line(records: list[dict[str, Any]], timing: dict[str, Any]) -> str:
    """One paragraph: runs, merged cells, mean CPU and wall seconds per run and the mean time split."""
    split = ", ".join(f"{k.split('/')[1]} {statistics.fmean(r['timers'][k] for r in records):.2f}" for k in TIMERS)
    pre = timing["pretrain_cpu_seconds"]
    cpu, wall = (statistics.fmean(r[k] for r in records) for k in ("cpu_seconds", "wall_seconds"))
    return (f"{timing['runs']} runs ({timing['merged_cells']} grid cells merged into them) on {timing['workers']} "
            f"workers in {timing['wall_seconds']:.0f} s; per run: CPU {cpu:.2f} s, wall {wall:.2f} s "
            f"(timers, s: {split}); "
            f"pre-training {statistics.fmean(pre.values()):.1f} CPU s per seed ({len(pre)} seeds).\n")


@dataclass(frozen=True)
class Term:
    """``coef`` times a cell's value: its ``final`` metric or its ``base`` (the seed's pre-trained policy).
    ``objective`` ``None``: each objective of the grid in turn (a pooled claim)."""

    coef: float
    max_staleness: int
    old_logits: str
    objective: str | None = None
    value: Literal["final", "base"] = "final"


@dataclass(frozen=True)
class Claim:
    """``sum(term values) > 0`` per seed (``greater``) or ``== 0`` (``equal``); ``source`` cites it."""

    text: str
    source: str
    terms: tuple[Term, ...]
    kind: Literal["greater", "equal"] = "greater"

    @property
    def pooled(self) -> bool:
        return any(t.objective is None for t in self.terms)


@dataclass(frozen=True)
class ClaimResult:
    """A claim's units (objectives or seeds), effect interval, p-values and verdict."""

    claim: Claim
    units: tuple[str, ...]
    effects: tuple[float, ...]
    ci: Interval
    p_t: float
    p_sign: float
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim.text, "source": self.claim.source, "kind": self.claim.kind,
                "units": list(self.units), "effects": list(self.effects), "mean": self.ci.mean, "lo": self.ci.lo,
                "hi": self.ci.hi, "p_t": self.p_t, "p_sign": self.p_sign, "verdict": self.verdict}


def evaluate_claim(claim: Claim, grid: SweepConfig, records: list[dict[str, Any]]) -> ClaimResult | None:
    """The claim's paired effects on the sweep's records (merged cells read the run that stands for them);
    ``None`` when a cell it needs is not in the grid. A pooled claim skips the objectives that bind their
    old-logit strategy (their cells run that strategy, not the one the claim names) and those whose terms
    cancel on the same runs."""
    by_run = {(r["objective"], r["max_staleness"], r["old_logits"], r["seed"]): r for r in records}
    runs_of = grid.runs_of()
    objectives = tuple(o for o in grid.objectives if bound_strategy(o) is None) if claim.pooled else (None,)
    units: list[str] = []
    effects: list[float] = []
    for obj in objectives:
        per_seed = []
        for seed in grid.seeds:
            weight: dict[tuple[Cell, str], float] = {}
            for t in claim.terms:
                cell = (t.objective or obj, t.max_staleness, t.old_logits, seed)
                if cell not in runs_of:
                    return None
                key = (runs_of[cell], "final" if t.value == "final" else "base")
                weight[key] = weight.get(key, 0.0) + t.coef
            if all(w == 0.0 for w in weight.values()):
                break
            per_seed.append(sum(w * by_run[run][value] for (run, value), w in weight.items()))
        else:
            if claim.pooled:
                units.append(str(obj))
                effects.append(statistics.fmean(per_seed))
            else:
                units.extend(f"seed {s}" for s in grid.seeds)
                effects.extend(per_seed)
    if not effects:
        return None
    ci = t_interval(effects)
    return ClaimResult(claim, tuple(units), tuple(effects), ci, paired_t_p(effects), sign_test_p(effects),
                       verdict(ci, grid.min_effect, claim.kind))


#: Objectives whose paper claims robustness to stale or off-policy data, and the paper.
ROBUST = {
    "cispo": "CISPO, arXiv 2506.13585", "bapo": "BAPO, arXiv 2510.18927", "m2po": "M2PO, arXiv 2510.01161",
    "rec": "REC, arXiv 2509.24203", "opmd": "OPMD, arXiv 2509.24203", "gspo": "GSPO, arXiv 2507.18071",
    "st_ppo": "ST-PPO, arXiv 2511.20718", "turn_ppo": "Turn-PPO, arXiv 2511.20718",
    "dispo": "DISPO, arXiv 2602.00983", "mhpo": "MHPO, arXiv 2603.16929", "r2vpo": "R2VPO, arXiv 2601.03320",
    "ppo_ewma": "revised PPO-EWMA, arXiv 2605.12070",
}


def default_claims(grid: SweepConfig) -> list[Claim]:
    """The catalogue's claims for the grid's largest staleness ``S`` (and each staleness > 0 for the
    old-logit contrasts); :func:`evaluate_claim` drops those whose cells the grid lacks."""
    stale = sorted(s for s in grid.max_staleness if s > 0)
    if 0 not in grid.max_staleness or not stale:
        return []
    big = stale[-1]
    mol = "Missing Old Logits, arXiv 2605.12070"

    def drop(obj: str | None, ol: str = "snapshot", sign: float = 1.0) -> tuple[Term, ...]:
        """``sign * (value at S - value at 0)``: minus the drop from staleness 0 to S."""
        return Term(sign, big, ol, obj), Term(-sign, 0, ol, obj)

    claims = [Claim("PPO learns at max_staleness 0 (final above the base)", "the regime",
                    (Term(1.0, 0, "snapshot", "ppo"), Term(-1.0, 0, "snapshot", "ppo", "base")))]
    for s in stale:
        claims += [
            Claim(f"exact old logits beat recompute at max_staleness {s}", mol,
                  (Term(1.0, s, "snapshot"), Term(-1.0, s, "recompute"))),
            Claim(f"exact old logits beat behaviour-as-old at max_staleness {s}", mol,
                  (Term(1.0, s, "snapshot"), Term(-1.0, s, "behavior"))),
        ]
    claims += [
        Claim(f"staleness hurts with exact old logits (0 above {big})", mol, drop(None, sign=-1.0)),
        Claim(f"behaviour-as-old degrades with staleness (0 above {big})", mol, drop(None, "behavior", -1.0)),
        Claim(f"behaviour-as-old degrades more than exact old logits (0 to {big})", mol,
              drop(None) + drop(None, "behavior", -1.0)),
        Claim(f"PPO's clip degrades less than unclipped pg (0 to {big}, exact)", "PPO, arXiv 1707.06347",
              drop("ppo") + drop("pg", sign=-1.0)),
    ]
    claims += [Claim(f"{obj} degrades less than PPO with staleness (0 to {big}, exact)", src,
                     drop(obj) + drop("ppo", sign=-1.0)) for obj, src in ROBUST.items()]
    claims += [
        Claim(f"DISPO needs exact old logits (exact above recompute at {big})", ROBUST["dispo"],
              (Term(1.0, big, "snapshot", "dispo"), Term(-1.0, big, "recompute", "dispo"))),
        Claim(f"safe_fixed's differentiable penalty beats safe at {big} (exact)", "SAFE (ryyzn9/SAFE)",
              (Term(1.0, big, "snapshot", "safe_fixed"), Term(-1.0, big, "snapshot", "safe"))),
        Claim(f"decoupled_ppo equals ppo with exact old logits at {big}", "decoupled PPO, arXiv 2110.00641",
              (Term(1.0, big, "snapshot", "decoupled_ppo"), Term(-1.0, big, "snapshot", "ppo")), "equal"),
    ]
    return claims


def claims_table(results: list[ClaimResult], min_effect: float) -> str:
    """Markdown table of the claims' verdicts."""
    lines = [f"Effect: mean paired difference of the metric with its 95 % t-interval; a pooled claim's units are "
             f"objectives (each the mean over its seeds), another's are seeds. Held: the interval lies above 0 "
             f"(`equal`: inside ±{min_effect:g}); did not hold: it lies below {min_effect:g} (`equal`: it excludes "
             f"0); otherwise cannot be told apart at this scale.\n",
             "| claim | source | units | effect [95% CI] | p (paired t) | p (sign) | + / − | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        pos, neg = sum(e > 0 for e in r.effects), sum(e < 0 for e in r.effects)
        unit = "objectives" if r.claim.pooled else "seeds"
        lines.append(f"| {r.claim.text} | {r.claim.source} | {len(r.effects)} {unit} | {r.ci.fmt()} | "
                     f"{r.p_t:.3g} | {r.p_sign:.3g} | {pos} / {neg} | **{r.verdict}** |")
    return "\n".join(lines) + "\n"


def _plots(records: list[dict[str, Any]], claims: list[ClaimResult], metric: str, out: Path) -> None:
    objectives = sorted({r["objective"] for r in records})
    strategies = sorted({r["old_logits"] for r in records})
    ncols = min(len(objectives), 6)
    nrows = -(-len(objectives) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), dpi=100, squeeze=False,
                             sharey=True)
    for ax, obj in zip(axes.flat, objectives, strict=False):
        rows = [r for r in records if r["objective"] == obj]
        ax.axhline(statistics.fmean(r["base"] for r in rows), color="grey", lw=0.8, ls="--")
        for i, ol in enumerate(strategies):
            rs = [r for r in rows if r["old_logits"] == ol]
            xs = sorted({r["max_staleness"] for r in rs})
            cis = [t_interval([r["final"] for r in rs if r["max_staleness"] == x]) for x in xs]
            ax.errorbar([x + 0.15 * (i - 1) for x in xs], [c.mean for c in cis], capsize=2, marker="o", ms=3,
                        yerr=[[c.mean - c.lo for c in cis], [c.hi - c.mean for c in cis]], label=ol)
        ax.set_title(obj, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(objectives):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"final {metric}")
    for ax in axes[-1]:
        ax.set_xlabel("max_staleness")
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(out / f"final_{metric}.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=110)
    for s, ol in sorted({(r["max_staleness"], r["old_logits"]) for r in records}):
        curves = [r["curve"] for r in records if (r["max_staleness"], r["old_logits"]) == (s, ol)]
        steps = [step for step, _ in curves[0]]
        ax.plot(steps, [statistics.fmean(c[i][1] for c in curves if len(c) > i) for i in range(len(steps))],
                marker="o", ms=3, label=f"s={s} {ol}")
    ax.set_xlabel("step")
    ax.set_ylabel(f"held-out {metric} (mean over objectives, seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "curves.png")
    plt.close(fig)

    if claims:
        colours = {"held": "tab:green", "did not hold": "tab:red", "cannot be told apart": "tab:grey"}
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(claims) + 1), dpi=100)
        for y, c in enumerate(reversed(claims)):
            ax.errorbar([c.ci.mean], [y], xerr=[[c.ci.mean - c.ci.lo], [c.ci.hi - c.ci.mean]], fmt="o", ms=4,
                        capsize=2, color=colours[c.verdict])
        ax.set_yticks(range(len(claims)), [c.claim.text for c in reversed(claims)], fontsize=7)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"effect on {metric}, 95% CI (green held, red did not hold, grey cannot be told apart)",
                      fontsize=8)
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        fig.savefig(out / "claims.png")
        plt.close(fig)


def _html_table(table: str) -> str:
    rows = [line.strip("|").split("|") for line in table.strip().splitlines() if line.startswith("|")]
    head = "".join(f"<th>{c.strip()}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{c.strip()}</td>" for c in r) + "</tr>" for r in rows[2:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(out: Path, table: str, claims: str, runs: Comparison) -> None:
    plots = "".join(f"<img src='{p.name}'>" for p in sorted(out.glob("final_*.png")))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>ratiolab sweep</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1400px;margin:2rem auto}"
        "td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}img{max-width:100%}</style>"
        f"</head><body><h1>Staleness sweep</h1>{_html_table(table)}<p>{table.strip().splitlines()[-1]}</p>"
        f"<h2>Claims</h2>{_html_table(claims)}<img src='claims.png'>"
        f"<h2>Final held-out metric against the staleness bound (95% t-intervals)</h2>{plots}"
        "<h2>Held-out curves</h2><img src='curves.png'>"
        f"<h2>Every run</h2>{runs.html}<p>Each quantity with every run overlaid: "
        f"<a href='{COMPARE}/report.html'>{COMPARE}/report.html</a> (ratiolab compare). "
        "Every cell's own report.html lies in its run folder.</p></body></html>"
    )
    atomic_write_text(out / "report.html", page)
