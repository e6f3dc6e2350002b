"""``report.html`` for a run directory: a summary table, one PNG per quantity with its caption, the config.

Panels (:class:`ratiolab.report.plots.Panel`) name metric keys of ``metrics.jsonl``; keys a run did not
log are skipped, and a panel with none of its keys is left out, so one panel list serves several kinds
of run. Each figure's caption says what to look for (:mod:`ratiolab.report.glossary`), quotes the run's
config fields that explain it and gives the range of the logged values. The title, summary and notes of a
report are kept in ``report.json`` beside it, so :func:`rewrite_report` (``ratiolab report``) renders the
same page again from newer metrics.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ratiolab.report.plots import Panel, Rows, caption, file_name, render, window
from ratiolab.runs import RunDir, atomic_write_text

SPEC = "report.json"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1150px; color: #222; padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { text-align: left; padding: .25rem .8rem; border-bottom: 1px solid #ddd; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 1.2rem; }
figure { margin: 0; } img { width: 100%; }
figcaption { font-size: .85rem; color: #444; line-height: 1.35; }
.how { color: #555; font-size: .9rem; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; }
"""


def page(title: str, body: str) -> str:
    """A complete HTML page with the reports' style."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table, cells escaped."""
    esc = html.escape
    cells = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def how_to_read(n_points: int, several: bool) -> str:
    """The line under the summary that says what dots and lines are."""
    what = "one colour per run" if several else "one colour per key"
    return (f'<p class="how">Each panel is one quantity on its own y axis ({what}). Dots: logged values; line: '
            f"their exponential moving average with span w = max(1, n // 10) points (here w = {window(n_points)} "
            "for the longest series), bias-corrected so the first point is itself. Per-staleness panels put the "
            "staleness on the x axis; their line is the mean over the logged steps.</p>")


def figures(runs: Mapping[str, Rows], panels: Sequence[Panel], plot_dir: Path,
            configs: Mapping[str, Mapping[str, Any]]) -> str:
    """Render every panel some run (name -> rows; ``configs``: name -> config) logged into ``plot_dir``; the
    HTML grid of figures (src relative to the folder above ``plot_dir``)."""
    plot_dir.mkdir(exist_ok=True)
    for old in plot_dir.glob("*.png"):
        old.unlink()
    out = []
    for i, panel in enumerate(panels):
        name = file_name(i, panel)
        span = render(runs, panel, plot_dir / name)
        if span is not None:
            text = html.escape(caption(panel, configs, *span))
            out.append(f'<figure><img src="{plot_dir.name}/{name}" alt="{html.escape(panel.title)}">'
                       f"<figcaption>{text}</figcaption></figure>")
    return '<div class="grid">' + "".join(out) + "</div>"


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
    spec = {"title": title, "summary": [list(kv) for kv in summary], "notes": list(notes)}
    atomic_write_text(run.path / SPEC, json.dumps(spec, indent=1))
    rows = run.metrics()
    config = run.config()
    esc = html.escape
    summary_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary)
    longest = max((sum(k in r for r in rows) for p in panels for k in p.keys), default=0)
    name = run.path.name
    body = (f"<table>{summary_rows}</table>\n" + "".join(f"<p>{esc(n)}</p>" for n in notes)
            + how_to_read(longest, several=False)
            + figures({name: rows}, panels, run.path / "plots", {name: config})
            + f"\n<details><summary>config.yaml</summary><pre>{esc(yaml.safe_dump(config, sort_keys=False))}</pre>"
            f'</details>\n<p style="color:#888">{len(rows)} logged steps · {esc(str(run.path))}</p>')
    out = run.path / "report.html"
    atomic_write_text(out, page(title, body))
    return out


def rewrite_report(run: RunDir, panels: Sequence[Panel], title: str) -> Path:
    """Write ``run``'s report again from its current metrics with ``panels`` (those of the run's kind,
    :func:`ratiolab.report.panels.panels_for`): with the title, summary and notes stored in ``report.json`` by
    the run's last :func:`write_report`, else (a run still going) with ``title`` and the last logged step as
    the summary."""
    file = run.path / SPEC
    if not file.is_file():
        step = run.last_values(("step",)).get("step")
        return write_report(run, panels, title=title, summary=[("last logged step", str(step))],
                            notes=["The run has not finished: this report shows the metrics logged so far."])
    try:
        spec = json.loads(file.read_text())
        summary, notes = [(str(k), str(v)) for k, v in spec["summary"]], [str(n) for n in spec["notes"]]
        return write_report(run, panels, title=str(spec["title"]), summary=summary, notes=notes)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{file} is damaged ({err!r}); delete it to rebuild the report from {run.CONFIG}") from err
