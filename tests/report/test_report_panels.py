"""Report panels: one quantity per axis, smoothing by hand, captions that are not titles, no offset notation."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from ratiolab.report import GYM_PANELS, LM_PANELS, Panel, write_report
from ratiolab.report.glossary import GLOSSARY, ROWS, metric, run_context
from ratiolab.report.plots import by_staleness, caption, draw, smooth, window
from ratiolab.runs import RunDir

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_smooth_is_the_bias_corrected_ema() -> None:
    # span 3: alpha = 0.5; point t = sum 0.5^i y_(t-i) / sum 0.5^i
    assert smooth([0.0, 1.0, 2.0, 3.0], 3) == pytest.approx([0.0, 1 / 1.5, 2.5 / 1.75, 4.25 / 1.875])
    assert smooth([4.0, 8.0], 1) == [4.0, 8.0]  # span 1 leaves the points alone
    assert smooth([5.0, 5.0, 5.0], 7) == pytest.approx([5.0, 5.0, 5.0])  # no pull toward 0
    assert [window(n) for n in (1, 9, 10, 25, 250)] == [1, 1, 1, 2, 25]


def test_each_panel_is_one_quantity_with_a_documented_unit() -> None:
    for panel in (*LM_PANELS, *GYM_PANELS):
        rows = {id(metric(k)) for k in panel.keys}
        assert len(rows) == 1, f"{panel.title} mixes quantities {panel.keys}"
        assert panel.ylabel and panel.ylabel == metric(panel.keys[0]).unit
    # the old report drew loss and gradient norm on one axis, and reward with accuracy
    for a, b in (("loss", "grad_norm"), ("reward/mean", "eval/accuracy"), ("staleness/max", "partial/seq_frac")):
        assert not any(a in p.keys and b in p.keys for p in LM_PANELS)


def test_captions_say_what_to_look_for_not_the_title() -> None:
    for panel in (*LM_PANELS, *GYM_PANELS):
        text = caption(panel, {}, 0.0, 1.0)
        assert panel.title.lower() not in text.lower()[: len(panel.title) + 5], panel.title
        assert len(panel.metric.look_for.split()) >= 8, f"{panel.title}: the caption says too little"
    looks = [r.look_for for r in ROWS]
    assert len(set(looks)) == len(looks)


def test_w_disc_caption_explains_the_fp32_engine_and_quotes_the_run() -> None:
    row = metric("w_disc/mean")
    assert "fp32" in row.look_for and "1e-5" in row.look_for
    cfg = {"sampling": {"engine_dtype": "float32", "top_k": 0}}
    assert run_context(row, {"a": cfg}) == "This run: sampling.engine_dtype = float32, sampling.top_k = 0."
    assert run_context(metric("loss"), {"a": cfg}) == ""
    bf16 = {"sampling": {"engine_dtype": "bfloat16", "top_k": 0}}
    assert run_context(row, {"a": cfg, "b": bf16, "c": cfg}) == (
        "These runs: sampling.engine_dtype = float32 (a, c), bfloat16 (b), sampling.top_k = 0.")


def _documented() -> set[str]:
    """The keys in the first column of docs/metrics.md's tables (``a/b``, ``/c`` shorthand expanded)."""
    keys = set()
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        prefix = ""
        for key in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
            if key.startswith("/"):
                key = prefix + key
            prefix = key.rsplit("/", 1)[0] if "/" in key else ""
            keys.add(key)
    return keys


def test_every_glossary_key_is_documented_in_docs_metrics() -> None:
    documented = _documented()
    patterns = [re.compile(re.escape(d).replace(r"\{kind\}", r"[\w+]+")) for d in documented if "{kind}" in d]
    missing = [k for k in GLOSSARY if k not in documented and not any(p.fullmatch(k) for p in patterns)]
    assert not missing, f"document these in docs/metrics.md: {missing}"
    assert "time/elapsed" in documented


def test_a_ratio_at_one_is_drawn_flat_without_an_offset() -> None:
    rows = [{"step": s, "w_disc/mean": 1.0 + 1e-6 * (-1) ** s} for s in range(12)]
    fig, ax = plt.subplots()
    span = draw(ax, {"run": rows}, Panel("w", ("w_disc/mean",)))
    fig.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""  # the old report printed "1e-6 + 1"
    y0, y1 = ax.get_ylim()
    assert y1 - y0 >= 0.02 and y0 < 1.0 < y1
    assert span == (1.0 - 1e-6, 1.0 + 1e-6)
    points, line = ax.get_lines()
    assert len(points.get_xdata()) == 12 and list(line.get_ydata()) == pytest.approx(smooth(points.get_ydata(), 1))
    plt.close(fig)


def test_tick_labels_show_the_values_themselves() -> None:
    rows = [{"step": s, "grad_norm": 40.0 + 1e-5 * s} for s in range(12)]  # no minimum span: a tight range
    fig, ax = plt.subplots()
    draw(ax, {"run": rows}, Panel("g", ("grad_norm",)))
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ax.yaxis.get_major_formatter().get_offset() == "" and all(abs(float(lb) - 40) < 1e-3 for lb in labels)
    plt.close(fig)


def test_a_per_staleness_panel_puts_k_on_the_x_axis() -> None:
    rows = [{"step": 1, "w_disc/abs_log_s0": 0.1, "w_disc/abs_log_s2": 0.5},
            {"step": 2, "w_disc/abs_log_s0": 0.3, "w_disc/abs_log_s1": 0.2, "w_disc/abs_log_s2": 0.7}]
    assert by_staleness(rows, "w_disc/abs_log_s{k}") == {0: [0.1, 0.3], 1: [0.2], 2: [0.5, 0.7]}
    fig, ax = plt.subplots()
    draw(ax, {"run": rows}, Panel("w", ("w_disc/abs_log_s{k}",), by_staleness=True))
    mean = ax.get_lines()[-1]
    assert list(mean.get_xdata()) == [0, 1, 2] and list(mean.get_ydata()) == pytest.approx([0.2, 0.2, 0.6])
    assert ax.get_xlabel().startswith("staleness k")
    plt.close(fig)


def test_report_has_one_figure_per_logged_quantity(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", {"sampling": {"engine_dtype": "float32"}})
    for step in range(6):
        run.log({"step": step, "loss": 1e-3 * step, "grad_norm": 40.0 + step, "w_disc/mean": 1.0, "w_disc/min": 1.0})
    page = write_report(run, LM_PANELS, title="t").read_text()
    assert sorted(p.name for p in (run.path / "plots").iterdir()) == [
        "09-engine_learner_mismatch_w_disc.png", "10-loss.png", "11-gradient_norm.png"]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    alts = re.findall(r'alt="(.*?)"', page)
    assert alts == ["Engine-learner mismatch w_disc", "Loss", "Gradient norm"]
    assert all(c != a and a not in c for c, a in zip(captions, alts, strict=True))
    assert "This run: sampling.engine_dtype = float32." in captions[0]
    assert "range from 40 to 45" in captions[2]
    run.log({"step": 6, "explained_variance": float("nan")})  # logged, never finite: no panel, no error
    write_report(run, GYM_PANELS, title="t")
    assert not list((run.path / "plots").iterdir())
