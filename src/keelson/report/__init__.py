"""Reports a person would rather look at than read: self-contained HTML that works offline."""

from keelson.report.run_report import MetricInterval, RunReport, render, write

__all__ = ["MetricInterval", "RunReport", "render", "write"]
