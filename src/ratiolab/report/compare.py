"""``ratiolab compare RUN [RUN ...]``: several runs of one kind overlaid per panel, and a summary table.

Each panel of the runs' kind (:func:`ratiolab.report.panels.panels_for`) is drawn once with one colour per
run (legend: the run names, each run folder's name, or its path where two folders share a name); a panel
of several keys shows its first key any run logged (the title names it). The summary table gives per run
the last logged step, its wall time (the last value of the first of
:data:`ratiolab.report.panels.WALL_KEYS` it logged) and its held-out metric
(:data:`ratiolab.report.panels.HEADLINE`): the first logged value (a language-model run's base), the final
and the best.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ratiolab.report.html import figures, how_to_read, page, table
from ratiolab.report.panels import HEADLINE, WALL_KEYS, Kind, kind, panels_for
from ratiolab.report.plots import Rows, series
from ratiolab.runs import RunDir, atomic_write_text


@dataclass(frozen=True)
class Comparison:
    """Where the page lies, the summary as a markdown table and as HTML."""

    report: Path
    markdown: str
    html: str


def open_run(path: str | Path) -> tuple[RunDir, Rows]:
    """The run folder ``path`` and its logged rows; a folder that is not a run, or has logged nothing, is a
    one-line error naming it."""
    p = Path(path)
    for name in (RunDir.CONFIG, RunDir.METRICS):
        if not (p / name).is_file():
            raise FileNotFoundError(f"{p} has no {name}: it is not a run folder, or the run has not logged a step "
                                    "yet; pass run folders made by ratiolab train")
    run = RunDir(p)
    rows = run.metrics()
    if not rows:
        raise FileNotFoundError(f"{p / RunDir.METRICS} is empty: the run has not logged a step yet")
    return run, rows


def _names(paths: Sequence[Path]) -> list[str]:
    names = [p.name for p in paths]
    return [str(p) if names.count(p.name) > 1 else p.name for p in paths]


def _fmt(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.4g}"


def summary_rows(rows: Rows, run_kind: Kind) -> list[str]:
    """``[steps, wall s, first, final, best]`` of one run's rows (``—`` for what it did not log); the first
    held-out value of a language-model run is its base policy's, logged at step 0."""
    steps = [r["step"] for r in rows if "step" in r]
    wall = next((ys for k in WALL_KEYS if (ys := series(rows, "step", k)[1])), [math.nan])
    _, ys = series(rows, "step", HEADLINE[run_kind][0])
    base, final, best = (ys[0], ys[-1], max(ys)) if ys else (math.nan,) * 3
    return [str(steps[-1]) if steps else "—", _fmt(wall[-1]), _fmt(base), _fmt(final), _fmt(best)]


def compare_runs(paths: Sequence[str | Path], out: str | Path, title: str = "ratiolab: runs compared") -> Comparison:
    """Overlay the runs in ``paths`` (all of one kind) per panel; write ``out/report.html``, ``out/plots/*.png``
    and ``out/summary.md``."""
    if not paths:
        raise ValueError("compare: give at least one run folder")
    opened = [open_run(p) for p in paths]
    kinds = {kind(run.config()) for run, _ in opened}
    if len(kinds) > 1:
        by = ", ".join(f"{run.path} ({kind(run.config())})" for run, _ in opened)
        raise ValueError(f"compare: the runs are of different kinds ({by}); compare language-model runs "
                         "(lm) and gym runs separately")
    (run_kind,) = kinds
    names = _names([run.path for run, _ in opened])
    runs = dict(zip(names, (rows for _, rows in opened), strict=True))
    head = ["run", "steps", "wall s", f"{HEADLINE[run_kind][1]}: first", "final", "best"]
    cells = [[name, *summary_rows(rows, run_kind)] for name, rows in runs.items()]
    md = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                    *("| " + " | ".join(c) + " |" for c in cells)]) + "\n"
    summary = table(head, cells)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    longest = max(len(rows) for rows in runs.values())
    sources = "".join(f"<li>{html.escape(n)}: {html.escape(str(run.path))}</li>"
                      for n, (run, _) in zip(names, opened, strict=True))
    body = (summary + how_to_read(longest, several=True)
            + figures(runs, panels_for(opened[0][0].config()), folder / "plots",
                      {n: run.config() for n, (run, _) in zip(names, opened, strict=True)})
            + f"<details><summary>run folders</summary><ul>{sources}</ul></details>")
    atomic_write_text(folder / "summary.md", md)
    atomic_write_text(folder / "report.html", page(title, body))
    return Comparison(folder / "report.html", md, summary)
