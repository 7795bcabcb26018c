"""Report: the audit as a self-contained HTML page and its JSON data.

``render_html(report)`` returns the page; ``write_report(report, out_dir)`` writes
``report.json`` and ``report.html`` atomically.
"""
from expunge.report.html import render_html, write_report

__all__ = ["render_html", "write_report"]
