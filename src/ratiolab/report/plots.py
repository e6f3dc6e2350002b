"""One PNG per panel: one quantity on its own y axis, the logged points and a smoothed line, for one run or several.

A panel's keys all share one row of :mod:`ratiolab.report.glossary` (one unit, one axis). Over steps
each series is drawn as its logged points (small, faint) and its exponential moving average
(:func:`smooth`, a solid line). A per-staleness panel (``by_staleness``; its key is a ``{k}`` pattern
such as ``w_disc/abs_log_s{k}``) puts the staleness ``k`` on the x axis instead: the points are the
single steps' values at each ``k`` and the line is their mean over the logged steps. The y axis never
uses an offset (``1e-5 + 0.99999``): tick labels show the values themselves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from ratiolab.report.glossary import Metric, metric, run_context

Rows = Sequence[Mapping[str, Any]]
FIGSIZE, DPI = (4.6, 2.8), 100
MARGINS = {"left": 0.17, "right": 0.97, "top": 0.87, "bottom": 0.16}


@dataclass(frozen=True)
class Panel:
    """One plot: ``keys`` (one quantity) against ``x`` (a metric key, default ``step``); ``by_staleness``: the
    single key is a ``{k}`` pattern plotted against the staleness k. Unit and caption come from the glossary."""

    title: str
    keys: tuple[str, ...]
    x: str = "step"
    by_staleness: bool = False

    @property
    def metric(self) -> Metric:
        """The glossary row of the panel's first key (the quantity the panel shows)."""
        return metric(self.keys[0])

    @property
    def ylabel(self) -> str:
        return self.metric.unit

    @property
    def xlabel(self) -> str:
        return "staleness k (policy versions behind the learner)" if self.by_staleness else self.x

    def present(self, rows: Rows) -> list[str]:
        """The panel's keys (over steps) or staleness keys (``by_staleness``) that ``rows`` logged."""
        if self.by_staleness:
            return sorted({k for r in rows for k in r if _k_of(self.keys[0], k) is not None},
                          key=lambda k: _k_of(self.keys[0], k) or 0)
        return [k for k in self.keys if any(k in r for r in rows)]


def _k_of(pattern: str, key: str) -> int | None:
    head, _, tail = pattern.partition("{k}")
    m = re.fullmatch(re.escape(head) + r"(\d+)" + re.escape(tail), key)
    return int(m.group(1)) if m else None


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def series(rows: Rows, x: str, key: str) -> tuple[list[float], list[float]]:
    """``(xs, ys)`` of the rows that logged a finite ``key`` and ``x``."""
    pts = [(r[x], r[key]) for r in rows if x in r and key in r and _finite(r[key])]
    return [float(p[0]) for p in pts], [float(p[1]) for p in pts]


def window(n: int) -> int:
    """Smoothing window for ``n`` points: a tenth of them, at least 1 (1 leaves the points as they are)."""
    return max(1, n // 10)


def smooth(ys: Sequence[float], span: int) -> list[float]:
    """Bias-corrected exponential moving average with span ``span`` (``α = 2 / (span + 1)``): point ``t`` is
    ``Σ_i (1 − α)^i y_{t−i} / Σ_i (1 − α)^i`` over ``i = 0..t`` (pandas' ``ewm(span=span, adjust=True)``), so
    the first point is itself, not pulled toward 0. ``span = 1`` returns ``ys``."""
    alpha = 2.0 / (span + 1)
    out, num, den = [], 0.0, 0.0
    for y in ys:
        num = (1 - alpha) * num + y
        den = (1 - alpha) * den + 1
        out.append(num / den)
    return out


def by_staleness(rows: Rows, pattern: str) -> dict[int, list[float]]:
    """``k -> the finite values logged under pattern with {k} = k``, over all rows."""
    out: dict[int, list[float]] = {}
    for r in rows:
        for key, v in r.items():
            k = _k_of(pattern, key)
            if k is not None and _finite(v):
                out.setdefault(k, []).append(float(v))
    return dict(sorted(out.items()))


def _draw(ax: Axes, rows: Rows, panel: Panel, key: str, label: str | None, colour: Any) -> tuple[float, float] | None:
    """Draw one series (points and line); returns the (min, max) of its points, or None if it has none."""
    if panel.by_staleness:
        vals = by_staleness(rows, key)
        if not vals:
            return None
        for k, vs in vals.items():
            ax.plot([k] * len(vs), vs, "o", ms=2.5, alpha=0.25, color=colour, lw=0)
        ax.plot(list(vals), [sum(vs) / len(vs) for vs in vals.values()], "-o", ms=4, lw=1.6, color=colour,
                label=label)
        flat = [v for vs in vals.values() for v in vs]
        return min(flat), max(flat)
    xs, ys = series(rows, panel.x, key)
    if not ys:
        return None
    ax.plot(xs, ys, "o", ms=2.5, alpha=0.3, color=colour, lw=0)
    ax.plot(xs, smooth(ys, window(len(ys))), "-", lw=1.6, color=colour, label=label)
    return min(ys), max(ys)


def _finish(ax: Axes, panel: Panel, title: str, lo: float, hi: float) -> None:
    ax.set_title(title, fontsize=10, pad=12)  # room for a "1e-4" multiplier above the axis
    ax.set_xlabel(panel.xlabel, fontsize=8)
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    fmt = ScalarFormatter(useOffset=False)
    fmt.set_powerlimits((-3, 4))
    ax.yaxis.set_major_formatter(fmt)
    span = panel.metric.min_span
    if hi - lo < span:
        mid = (hi + lo) / 2
        ax.set_ylim(mid - span / 2, mid + span / 2)
    if panel.by_staleness:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def draw(ax: Axes, runs: Mapping[str, Rows], panel: Panel) -> tuple[float, float] | None:
    """Draw ``panel`` on ``ax``: with one run, each of the panel's logged keys; with several, the panel's first
    key any of them logged, one colour per run (legend: the run names). Returns the (min, max) of the
    plotted points, or None (nothing drawn) when no run logged a finite value of the panel's keys."""
    logged = [k for rows in runs.values() for k in panel.present(rows)]
    if not logged:
        return None
    cmap = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    ranges, title = [], panel.title
    if len(runs) > 1:
        key = next(k for k in panel.keys if panel.by_staleness or k in logged)
        if len(panel.keys) > 1:
            title = f"{panel.title}: {key}"
        for i, (name, rows) in enumerate(runs.items()):
            ranges.append(_draw(ax, rows, panel, key, name, cmap(i % cmap.N)))
    else:
        (rows,) = runs.values()
        keys = [panel.keys[0]] if panel.by_staleness else logged
        for i, key in enumerate(keys):
            ranges.append(_draw(ax, rows, panel, key, key if len(keys) > 1 else None, cmap(i % cmap.N)))
    found = [r for r in ranges if r is not None]
    if not found:  # logged, but never a finite value (explained variance of constant returns is NaN)
        return None
    lo, hi = min(r[0] for r in found), max(r[1] for r in found)
    _finish(ax, panel, title, lo, hi)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7, frameon=False)
    return lo, hi


def render(runs: Mapping[str, Rows], panel: Panel, out: Path) -> tuple[float, float] | None:
    """:func:`draw` ``panel`` on a figure of its own, saved to ``out`` (nothing written when it returns None)."""
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    try:
        span = draw(ax, runs, panel)
        if span is not None:
            fig.subplots_adjust(**MARGINS)  # fixed margins: tight_layout would double the rendering time
            fig.savefig(out)
        return span
    finally:
        plt.close(fig)


def file_name(i: int, panel: Panel) -> str:
    """``NN-title_in_snake.png``."""
    return f"{i:02d}-{''.join(c if c.isalnum() else '_' for c in panel.title.lower())}.png"


def caption(panel: Panel, configs: Mapping[str, Mapping[str, Any]], lo: float, hi: float) -> str:
    """The panel's caption: what to look for, the config fields it quotes as the runs (name -> config) set
    them, the range of the logged values."""
    parts = [panel.metric.look_for]
    if ctx := run_context(panel.metric, configs):
        parts.append(ctx)
    parts.append(f"Logged values range from {lo:.6g} to {hi:.6g}.")
    return " ".join(parts)
