"""Reports: one PNG per quantity of a run's metrics, one HTML page that shows them, and comparisons of runs."""

from ratiolab.report.compare import Comparison, compare_runs
from ratiolab.report.html import rewrite_report, write_report
from ratiolab.report.panels import GYM_PANELS, LM_PANELS, panels_for
from ratiolab.report.plots import Panel

__all__ = ["GYM_PANELS", "LM_PANELS", "Comparison", "Panel", "compare_runs", "panels_for", "rewrite_report",
           "write_report"]
