"""Reports: PNG plots of a run's metrics and one HTML page that shows them."""

from ratiolab.report.html import Panel, rewrite_report, write_report

__all__ = ["Panel", "rewrite_report", "write_report"]
