"""Evaluation across runs: the staleness sweep."""

from ratiolab.eval.sweep import SweepConfig, run_sweep

__all__ = ["SweepConfig", "run_sweep"]
