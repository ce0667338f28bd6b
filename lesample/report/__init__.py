"""Tidy results to self-contained HTML: one page per study and an index linking them.

The pages need no network: inline CSS, figures as base64 PNG, no script, no external URL.

>>> from lesample.report import Report, subplots, write_index
>>> fig, ax = subplots(figsize=(5, 3)); ax.plot(L, err)
>>> (Report("Samplers", intro="...").add_findings(["..."])
...     .add_table(summary, caption="...").add_figure(fig, caption="...")
...     .write("reports/samplers/report.html"))
>>> write_index("reports")   # discovers reports/*/report.html

Figures are encoded with ``savefig`` whatever the backend; :func:`subplots` makes figures
outside pyplot (no GUI, nothing to close). The ``lesample`` command selects matplotlib's Agg
backend itself; importing this package does not change the backend (a notebook keeps its
inline plots).
"""

from lesample.report.index import (
    ReportEntry,
    ReportInfo,
    discover_reports,
    read_report_info,
    write_index,
)
from lesample.report.markup import escape, inline, markdown
from lesample.report.page import Report, figure_to_png, subplots
from lesample.report.plots import layout_problems, robust_boxplot
from lesample.report.stats import (
    NO_INTERVAL,
    Interval,
    binomial_interval,
    decide,
    difference_interval,
    mean_interval,
    t_halfwidth,
)
from lesample.report.tables import column_format, format_number, html_table

__all__ = [
    "NO_INTERVAL",
    "Interval",
    "Report",
    "ReportEntry",
    "ReportInfo",
    "binomial_interval",
    "column_format",
    "decide",
    "difference_interval",
    "discover_reports",
    "escape",
    "figure_to_png",
    "format_number",
    "html_table",
    "inline",
    "layout_problems",
    "markdown",
    "mean_interval",
    "read_report_info",
    "robust_boxplot",
    "subplots",
    "t_halfwidth",
    "write_index",
]
