"""The ``dashboard`` and ``report`` commands; ``samtune.cli`` adds them with ``register``."""

from __future__ import annotations

import argparse

DEFAULT_HOST = "127.0.0.1"  # loopback: the dashboard has no authentication and can edit studies
DEFAULT_PORT = 8080  # optuna-dashboard's own default

STORAGE_HELP = "Optuna RDB URL (default: sqlite:///studies/STUDY.db)"
EPILOG = "Exit status: 0 success (and after Ctrl-C), 2 bad input or usage, 1 internal error."


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535 (0: any free port), got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``samtune dashboard`` and ``samtune report`` to the main parser's subcommands."""
    p = subparsers.add_parser(
        "dashboard", help="browse a study in optuna-dashboard, with curves, figures and a note",
        description="Attach samtune's per-trial curves, figures and recommendation note to the "
        "study (idempotent), then serve optuna-dashboard until Ctrl-C.", epilog=EPILOG)
    p.add_argument("--study", default=None, help="study name (its page is the printed URL)")
    p.add_argument("--storage", default=None, help=f"{STORAGE_HELP}; without --study: every study in it")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port to listen on; 0 picks a free one (default {DEFAULT_PORT})")
    p.add_argument("--artifact-dir", default=None,
                   help="artifact folder (default: 'artifacts' beside the SQLite file)")
    p.set_defaults(func=cmd_dashboard)

    p = subparsers.add_parser(
        "report", help="write one self-contained HTML report of a study",
        description="Write one HTML file (plotly.js inlined, no network needed) with the "
        "recommendation, the optimization history, parameter importances, the best result per "
        "variant, the confirmation runs and the forgetting-versus-accuracy relation.", epilog=EPILOG)
    p.add_argument("--study", required=True)
    p.add_argument("--storage", default=None, help=STORAGE_HELP)
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.set_defaults(func=cmd_report)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from samtune.inspect._dashboard import serve

    serve(args.study, args.storage, host=args.host, port=args.port, artifact_dir=args.artifact_dir)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from samtune.inspect._report import report

    print(report(args.study, args.storage, args.out))
    return 0
