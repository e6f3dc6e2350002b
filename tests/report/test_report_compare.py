"""``ratiolab compare`` and the kinds of report: overlays of N runs, the summary table, gym panels, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from ratiolab.cli import main
from ratiolab.report import GYM_PANELS, LM_PANELS, compare_runs
from ratiolab.report.compare import open_run, summary_rows
from ratiolab.report.plots import draw, file_name
from ratiolab.runs import RunDir


def _fake(path: Path, accuracies: list[float], elapsed: float) -> Path:
    run = RunDir.create(path, {"task": {"name": "arithmetic"}})
    for step, acc in enumerate(accuracies):
        run.log({"step": step, "eval/accuracy": acc, "reward/mean": acc / 2, "time/elapsed": elapsed * step})
    return run.path


def test_summary_row_takes_steps_wall_time_first_final_and_best(tmp_path: Path) -> None:
    rows = open_run(_fake(tmp_path / "a", [0.2, 0.6, 0.4], 1.5))[1]
    assert summary_rows(rows, "lm") == ["2", "3", "0.2", "0.4", "0.6"]
    assert summary_rows([{"step": 4, "episodic_return": 9.0}], "gym") == ["4", "—", "—", "—", "—"]


def test_compare_overlays_every_run_in_each_panel(tmp_path: Path, lm_runs: list[Path]) -> None:
    runs = [*lm_runs, _fake(tmp_path / "fake", [0.0, 0.25, 0.5, 0.75], 2.0)]
    res = compare_runs(runs, tmp_path / "cmp")
    page = res.report.read_text()
    # the held-out accuracy panel: one line per run, legend = the run names
    opened = {p.name: open_run(p)[1] for p in runs}
    fig, ax = plt.subplots()
    draw(ax, opened, LM_PANELS[1])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run0", "run1", "fake"]
    assert ax.get_title() == "Held-out accuracy: eval/accuracy"
    plt.close(fig)
    assert (tmp_path / "cmp" / "plots" / file_name(1, LM_PANELS[1])).is_file()
    # per-staleness panels come from the asynchronous run only
    assert (tmp_path / "cmp" / "plots" / file_name(15, LM_PANELS[15])).is_file()
    lines = res.markdown.splitlines()
    assert lines[0] == "| run | steps | wall s | held-out accuracy (greedy): first | final | best |"
    assert [ln.split(" | ")[0] for ln in lines[2:]] == ["| run0", "| run1", "| fake"]
    assert lines[-1] == "| fake | 3 | 6 | 0 | 0.75 | 0.75 |"
    assert all(float(ln.split(" | ")[2]) > 0 for ln in lines[2:4])  # the real runs log time/elapsed
    assert page.count("<tr>") == 4 and "<td>fake</td>" in page
    assert "These runs: sampling.engine_dtype = float32 (run0), bfloat16 (run1)" in page  # the w_disc caption
    assert (tmp_path / "cmp" / "summary.md").read_text() == res.markdown


def test_compare_command_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _fake(tmp_path / "x" / "same", [0.1, 0.3], 1.0), _fake(tmp_path / "y" / "same", [0.2, 0.1], 1.0)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"| {a} | 1 | 1 | 0.1 | 0.3 | 0.3 |" in out  # two folders called "same": named by path
    assert (tmp_path / "out" / "report.html").is_file()


def test_a_folder_without_metrics_is_a_one_line_error_naming_it(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    good = _fake(tmp_path / "good", [0.1, 0.2], 1.0)
    bad = RunDir.create(tmp_path / "bad", {"task": {}}).path  # config.yaml, but nothing logged
    assert main(["compare", str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad} has no metrics.jsonl" in err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'empty'} has no config.yaml" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_compare_refuses_runs_of_different_kinds(tmp_path: Path, gym_run: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lm = _fake(tmp_path / "lm", [0.1, 0.2], 1.0)
    assert main(["compare", str(lm), str(gym_run), "--out", str(tmp_path / "out")]) == 2
    assert "different kinds" in capsys.readouterr().err


def test_compare_of_gym_runs_reads_the_eval_return(tmp_path: Path, gym_run: Path) -> None:
    res = compare_runs([gym_run], tmp_path / "cmp")
    head, _, row = res.markdown.splitlines()
    assert head == "| run | steps | wall s | deterministic eval return: first | final | best |"
    cells = row.strip("| ").split(" | ")
    assert cells[1] == "256" and float(cells[2]) > 0 and cells[3] == cells[4] == cells[5]  # one evaluation
    assert (tmp_path / "cmp" / "plots" / file_name(0, GYM_PANELS[0])).is_file()


def test_gym_report_keeps_gym_panels_and_lm_report_its_own(gym_run: Path, lm_runs: list[Path]) -> None:
    gym_titles = {p.title for p in GYM_PANELS}
    lm_titles = {p.title for p in LM_PANELS}
    for run, own, other in ((gym_run, gym_titles, lm_titles), (lm_runs[1], lm_titles, gym_titles)):
        assert main(["report", str(run)]) == 0
        alts = set(re.findall(r'alt="(.*?)"', (run / "report.html").read_text()))
        assert alts and alts <= own and not alts & (other - own), run
    gym_alts = set(re.findall(r'alt="(.*?)"', (gym_run / "report.html").read_text()))
    assert {"Episodic return", "Value loss", "Explained variance"} <= gym_alts
    lm_alts = set(re.findall(r'alt="(.*?)"', (lm_runs[1] / "report.html").read_text()))
    assert {"Held-out accuracy", "Tokens by staleness", "|log w_disc| by staleness"} <= lm_alts
