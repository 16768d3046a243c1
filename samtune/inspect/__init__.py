"""Looking at a study: optuna-dashboard enriched with samtune's curves, note and figures
(``publish``, ``serve``), and a self-contained HTML report (``write_report``).

Names are imported on first use, so that the CLI's parser does not load Optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from samtune._lazy import resolve

_LAZY = {  # public name -> the module defining it
    "default_artifact_dir": "samtune.inspect._dashboard",
    "make_dashboard_server": "samtune.inspect._dashboard",
    "serve": "samtune.inspect._dashboard",
    "Published": "samtune.inspect._publish",
    "curves_csv": "samtune.inspect._publish",
    "publish": "samtune.inspect._publish",
    "SECTIONS": "samtune.inspect._report",
    "build_report": "samtune.inspect._report",
    "report": "samtune.inspect._report",
    "write_report": "samtune.inspect._report",
}

if TYPE_CHECKING:
    from samtune.inspect._dashboard import default_artifact_dir, make_dashboard_server, serve
    from samtune.inspect._publish import Published, curves_csv, publish
    from samtune.inspect._report import SECTIONS, build_report, report, write_report


def __getattr__(name: str) -> Any:
    return resolve("samtune.inspect", _LAZY, name, globals())


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
