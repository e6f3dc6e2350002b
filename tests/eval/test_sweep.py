"""``ratiolab sweep``: a 2 x 1 x 2 grid end to end, its table and report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratiolab.cli import main
from ratiolab.config import ConfigError, override
from ratiolab.eval import SweepConfig, run_sweep
from ratiolab.eval.sweep import ROBUST, Claim, Term, default_claims, evaluate_claim, summary_table
from ratiolab.learner import TrainConfig

BASE = [
    "policy.preset=tiny", "policy.pretrain_steps=3", "algo.prompts_per_step=2", "algo.samples_per_prompt=2",
    "algo.minibatches=1", "sampling.max_new_tokens=4", "eval_size=4", "eval_every=1", "steps=2", "threads=1",
]


def test_sweep_grid_table_claims_and_report(tmp_path: Path) -> None:
    base = override(TrainConfig(), [*BASE, f"policy.cache_dir={tmp_path / 'cache'}", "eval_samples=2"])
    out = run_sweep(SweepConfig(base=base, objectives=("ppo",), max_staleness=(0, 1),
                                old_logits=("snapshot", "behavior"), out_dir=str(tmp_path / "sweep"), metric="pass1"),
                    progress=lambda _: None)
    data = json.loads((out / "sweep.json").read_text())
    assert len(data["cells"]) == 4  # behaviour-as-old runs at staleness 0 too: only the engine mismatch differs
    assert all(c["max_staleness_seen"] <= 1 and len(c["curve"]) == 3 for c in data["cells"])
    assert all(c["base"] == c["base_pass1"] and c["cpu_seconds"] > 0 for c in data["cells"])
    assert list(data["timing"]["pretrain_cpu_seconds"]) == ["0"] and data["timing"]["runs"] == 4
    table = (out / "table.md").read_text()
    assert table.count("\n| ppo |") == 4 and "| ppo | 1 | behavior | 1 |" in table and "4 runs (0 grid cells" in table
    claims = {c["claim"]: c for c in data["claims"]}
    assert claims["PPO learns at max_staleness 0 (final above the base)"]["verdict"] == "cannot be told apart"  # n 1
    assert "exact old logits beat behaviour-as-old at max_staleness 1" in (out / "claims.md").read_text()
    for png in ("final_pass1.png", "curves.png", "claims.png"):
        assert (out / png).stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert "final_pass1.png" in page and "href='runs/report.html'" in page
    compared = (out / "runs" / "summary.md").read_text().splitlines()[2:]
    assert sorted(line.split(" | ")[0][2:] for line in compared) == sorted(Path(c["run_dir"]).name
                                                                           for c in data["cells"])
    assert (out / "runs" / "plots" / "01-held_out_accuracy.png").stat().st_size > 1000


def test_summary_table_gives_t_intervals_over_seeds_and_counts_collapses() -> None:
    rec = {"objective": "ppo", "max_staleness": 2, "old_logits": "snapshot", "base": 0.5, "auc": 0.5,
           "final_entropy": 1.0, "wall_seconds": 10.0, "cpu_seconds": 4.0, "max_staleness_seen": 2}
    table = summary_table([rec | {"seed": 0, "final": 0.75}, rec | {"seed": 1, "final": 0.25}], 0.1, "pass1")
    # mean 0.5, sd 0.35355, se 0.25, t(0.975, df 1) = 12.7062 -> half width 3.17655; 0.25 < 0.5 - 0.1 collapsed
    assert ("| ppo | 2 | snapshot | 2 | 0.500 | 0.500 [-2.677, 3.677] | 0.000 [-3.177, 3.177] | 0.500 | 1/2 | "
            "1.000 | 2 |") in table
    assert "final pass1" in table


def test_bad_grid_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="old_logits = 'psychic'"):
        SweepConfig(base=TrainConfig(), old_logits=("psychic",)).validate()
    with pytest.raises(ConfigError, match="grid is empty"):
        SweepConfig(base=TrainConfig(), seeds=()).validate()
    assert main(["sweep", "--staleness", "-1", "--out", str(tmp_path / "s")]) == 2
    assert "max_staleness = -1" in capsys.readouterr().err


def test_cells_merge_repeated_runs_and_bind_preset_strategies() -> None:
    grid = SweepConfig(base=TrainConfig(), objectives=("ppo", "ppo_ewma"), max_staleness=(0, 2),
                       old_logits=("snapshot", "recompute", "behavior"), seeds=(0,))
    assert grid.cells() == [
        ("ppo", 0, "snapshot", 0), ("ppo", 0, "behavior", 0),  # recompute == snapshot at staleness 0
        ("ppo", 2, "snapshot", 0), ("ppo", 2, "recompute", 0), ("ppo", 2, "behavior", 0),
        ("ppo_ewma", 0, "ewma", 0), ("ppo_ewma", 2, "ewma", 0),  # the preset binds its strategy
    ]
    grid.validate()


def test_merged_cells_are_named_with_the_run_that_stands_for_them() -> None:
    grid = SweepConfig(base=TrainConfig(), objectives=("ppo", "ppo_ewma"), max_staleness=(0,),
                       old_logits=("snapshot", "recompute"), seeds=(0,))
    assert grid.merged() == {
        ("ppo", 0, "recompute", 0): ("ppo", 0, "snapshot", 0),
        ("ppo_ewma", 0, "snapshot", 0): ("ppo_ewma", 0, "ewma", 0),
        ("ppo_ewma", 0, "recompute", 0): ("ppo_ewma", 0, "ewma", 0),
    }
    assert set(grid.cells()) == set(grid.merged().values())


#: final values of (objective, max_staleness, old_logits) over seeds 0, 1, 2 (the runs of GRID below)
FINALS = {
    ("ppo", 0, "snapshot"): (0.6, 0.7, 0.8), ("ppo", 0, "behavior"): (0.5, 0.6, 0.7),
    ("ppo", 2, "snapshot"): (0.5, 0.6, 0.7), ("ppo", 2, "recompute"): (0.4, 0.6, 0.5),
    ("ppo", 2, "behavior"): (0.3, 0.4, 0.5),
    ("cispo", 0, "snapshot"): (0.6, 0.6, 0.6), ("cispo", 0, "behavior"): (0.6, 0.6, 0.6),
    ("cispo", 2, "snapshot"): (0.6, 0.5, 0.7), ("cispo", 2, "recompute"): (0.6, 0.6, 0.4),
    ("cispo", 2, "behavior"): (0.5, 0.5, 0.5),
    ("ppo_ewma", 0, "ewma"): (0.9, 0.9, 0.9), ("ppo_ewma", 2, "ewma"): (0.1, 0.2, 0.3),
}
GRID = SweepConfig(base=TrainConfig(), objectives=("ppo", "cispo", "ppo_ewma"), max_staleness=(0, 2),
                   old_logits=("snapshot", "recompute", "behavior"), seeds=(0, 1, 2))


def _records() -> list[dict[str, object]]:
    assert set(GRID.cells()) == {(*k, s) for k in FINALS for s in GRID.seeds}
    return [{"objective": o, "max_staleness": m, "old_logits": ol, "seed": s, "final": v[s], "base": 0.4}
            for (o, m, ol), v in FINALS.items() for s in GRID.seeds]


def _claim(text: str) -> Claim:
    return next(c for c in default_claims(GRID) if c.text == text)


def test_pooled_claim_pairs_seeds_within_objectives_and_skips_bound_strategies() -> None:
    res = evaluate_claim(_claim("exact old logits beat recompute at max_staleness 2"), GRID, _records())
    assert res is not None
    # ppo: snapshot - recompute per seed 0.1, 0.0, 0.2 -> 0.1; cispo: 0.0, -0.1, 0.3 -> 0.0667; ppo_ewma runs
    # ewma in both cells (skipped). Two units: mean 0.08333, sd 0.02357, se 0.016667, t = 5.0 (df 1):
    # p = 1 - 2 atan(5) / pi = 0.125666; half width 12.7062 * 0.016667 = 0.21177
    assert res.units == ("ppo", "cispo")
    assert res.effects == pytest.approx((0.1, 0.2 / 3))
    assert (res.ci.mean, res.ci.lo, res.ci.hi) == pytest.approx((0.083333, -0.128437, 0.295103), abs=1e-5)
    assert res.p_t == pytest.approx(0.125666, abs=1e-5) and res.p_sign == 0.5
    assert res.verdict == "cannot be told apart"
    beh = evaluate_claim(_claim("behaviour-as-old degrades with staleness (0 above 2)"), GRID, _records())
    assert beh is not None and beh.effects == pytest.approx((0.2, 0.1))  # behaviour at 0 is its own run


def test_claims_read_merged_cells_from_the_run_that_stands_for_them() -> None:
    # recompute at staleness 0 is merged into snapshot: 0.6 0.7 0.8 minus behaviour 0.5 0.6 0.7
    merged = Claim("recompute at 0 is snapshot", "test", (Term(1.0, 0, "recompute", "ppo"),
                                                          Term(-1.0, 0, "behavior", "ppo")))
    res = evaluate_claim(merged, GRID, _records())
    assert res is not None and res.units == ("seed 0", "seed 1", "seed 2")
    assert res.effects == pytest.approx((0.1, 0.1, 0.1)) and res.verdict == "held"
    same = Claim("same run", "test", (Term(1.0, 0, "snapshot", "ppo"), Term(-1.0, 0, "recompute", "ppo")))
    assert evaluate_claim(same, GRID, _records()) is None  # the two cells are one run: nothing to compare
    # ppo_ewma's own claim reads its ewma runs: (0.1 0.2 0.3 - 0.9) - (ppo: 0.5 0.6 0.7 - 0.6 0.7 0.8)
    ewma = evaluate_claim(_claim("ppo_ewma degrades less than PPO with staleness (0 to 2, exact)"), GRID, _records())
    assert "ppo_ewma" in ROBUST and ewma is not None
    assert ewma.effects == pytest.approx((-0.7, -0.6, -0.5)) and ewma.verdict == "did not hold"
    # mean -0.6, sd 0.1, se 0.057735, t(0.975, df 2) = 4.302653 -> half width 0.248414
    assert (ewma.ci.lo, ewma.ci.hi) == pytest.approx((-0.848414, -0.351586), abs=1e-5)
    learns = evaluate_claim(_claim("PPO learns at max_staleness 0 (final above the base)"), GRID, _records())
    assert learns is not None and learns.effects == pytest.approx((0.2, 0.3, 0.4))  # base 0.4 of the same runs
    assert evaluate_claim(_claim("PPO's clip degrades less than unclipped pg (0 to 2, exact)"), GRID, _records()) \
        is None  # pg is not in the grid


def test_pass1_needs_eval_samples() -> None:
    with pytest.raises(ConfigError, match="eval_samples"):
        SweepConfig(base=TrainConfig(), metric="pass1").validate()
