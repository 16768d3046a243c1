"""Looking at a study: optuna-dashboard enriched with samtune's curves, note and figures
(``publish``, ``serve``), and a self-contained HTML report (``write_report``)."""

from __future__ import annotations

from samtune.inspect._dashboard import default_artifact_dir, make_dashboard_server, serve
from samtune.inspect._publish import Published, curves_csv, publish
from samtune.inspect._report import SECTIONS, build_report, report, write_report

__all__ = [
    "SECTIONS",
    "Published",
    "build_report",
    "curves_csv",
    "default_artifact_dir",
    "make_dashboard_server",
    "publish",
    "report",
    "serve",
    "write_report",
]
