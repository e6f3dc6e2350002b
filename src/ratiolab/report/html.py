"""``report.html`` for a run directory: a summary table, PNG plots of chosen metrics, the config.

Panels name metric keys of ``metrics.jsonl``; keys a run did not log are skipped, and a panel
with none of its keys is left out, so one panel list serves several kinds of run. The title, summary,
notes and panels of a report are kept in ``report.json`` beside it, so :func:`rewrite_report`
(``ratiolab report``) renders the same page again from newer metrics.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml

from ratiolab.runs import RunDir, atomic_write_text

SPEC = "report.json"


@dataclass(frozen=True)
class Panel:
    """One plot: ``keys`` against ``x`` (a metric key, default ``step``)."""

    title: str
    keys: tuple[str, ...]
    ylabel: str = ""
    x: str = "step"
    logy: bool = False


def _series(rows: Sequence[dict[str, Any]], x: str, key: str) -> tuple[list[float], list[float]]:
    pts = [(r[x], r[key]) for r in rows if key in r and x in r and _finite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _plot(rows: Sequence[dict[str, Any]], panel: Panel, out: Path) -> bool:
    present = [k for k in panel.keys if any(k in r for r in rows)]
    if not present:
        return False
    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=110)
    for key in present:
        xs, ys = _series(rows, panel.x, key)
        ax.plot(xs, ys, label=key, lw=1.4, marker="o" if len(xs) < 30 else None, ms=3)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.x)
    ax.set_ylabel(panel.ylabel)
    if panel.logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return True


def write_report(
    run: RunDir,
    panels: Sequence[Panel],
    *,
    title: str,
    summary: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
) -> Path:
    """Render the plots to ``run/plots/*.png`` and write ``run/report.html`` (and ``report.json``, what it
    shows); returns its path."""
    spec = {"title": title, "summary": [list(kv) for kv in summary], "notes": list(notes),
            "panels": [dataclasses.asdict(p) for p in panels]}
    atomic_write_text(run.path / SPEC, json.dumps(spec, indent=1))
    rows = run.metrics()
    plot_dir = run.path / "plots"
    plot_dir.mkdir(exist_ok=True)
    figures = []
    for i, panel in enumerate(panels):
        name = f"{i:02d}-{''.join(c if c.isalnum() else '_' for c in panel.title.lower())}.png"
        if _plot(rows, panel, plot_dir / name):
            figures.append((panel.title, f"plots/{name}"))
    esc = html.escape
    summary_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary)
    note_html = "".join(f"<p>{esc(n)}</p>" for n in notes)
    fig_html = "".join(
        f'<figure><img src="{src}" alt="{esc(t)}"><figcaption>{esc(t)}</figcaption></figure>' for t, src in figures
    )
    config = esc(yaml.safe_dump(run.config(), sort_keys=False))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1150px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ text-align: left; padding: .25rem .8rem; border-bottom: 1px solid #ddd; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; }} img {{ width: 100%; }} figcaption {{ font-size: .85rem; color: #555; }}
pre {{ background: #f6f6f6; padding: .8rem; overflow-x: auto; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table>{summary_rows}</table>
{note_html}
<div class="grid">{fig_html}</div>
<details><summary>config.yaml</summary><pre>{config}</pre></details>
<p style="color:#888">{len(rows)} logged steps · {esc(str(run.path))}</p>
</body></html>
"""
    out = run.path / "report.html"
    atomic_write_text(out, page)
    return out


def rewrite_report(run: RunDir, panels: Sequence[Panel], title: str) -> Path:
    """Write ``run``'s report again from its current metrics: with the title, summary, notes and panels stored
    in ``report.json`` by the run's last :func:`write_report`, else (a run still going) with ``panels`` and
    ``title`` and the last logged step as the summary."""
    file = run.path / SPEC
    if not file.is_file():
        step = run.last_values(("step",)).get("step")
        return write_report(run, panels, title=title, summary=[("last logged step", str(step))],
                            notes=["The run has not finished: this report shows the metrics logged so far."])
    try:
        spec = json.loads(file.read_text())
        stored = [Panel(**{**p, "keys": tuple(p["keys"])}) for p in spec["panels"]]
        summary, notes = [(str(k), str(v)) for k, v in spec["summary"]], [str(n) for n in spec["notes"]]
        return write_report(run, stored, title=str(spec["title"]), summary=summary, notes=notes)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{file} is damaged ({err!r}); delete it to rebuild the report from {run.CONFIG}") from err
