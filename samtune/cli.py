"""samtune's command line: each command parses, calls one public function, prints."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import Field, fields
from typing import Any

from samtune.errors import SamtuneError

EPILOG = "Exit status: 0 success, 2 bad input or usage, 1 internal error, 130 interrupted."


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}; see '{self.prog} --help'.\n")


def _whole(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        return value

    return parse


_positive_int = _whole(1)


def _field_parser(f: Field) -> Callable[[str], Any]:
    """How the CLI reads a ``SearchOptions`` field, from its type."""
    from samtune.search._options import split_columns

    kind = str(f.type).split(" | ")[0]
    if kind == "int":
        return _whole(f.metadata["low"]) if f.metadata["low"] is not None else int
    if kind == "float":
        return _positive_float
    if kind.startswith("tuple"):
        return split_columns
    return str


def add_search_options(p: argparse.ArgumentParser) -> None:
    """One flag per ``SearchOptions`` field, with its help and default from the field."""
    from samtune.search._options import SearchOptions, flag, list_presets

    for f in fields(SearchOptions):
        meta = f.metadata
        if not meta["cli"]:
            continue
        text = meta["help"].replace("{presets}", ", ".join(list_presets()))
        if f.default not in (None, ()):
            text += f" (default {f.default})"
        p.add_argument(flag(f.name), dest=f.name, type=_field_parser(f), choices=meta["choices"],
                       metavar=meta["metavar"], default=argparse.SUPPRESS, help=text)


def build_parser() -> argparse.ArgumentParser:
    from samtune import __version__
    from samtune.search._options import HEARTBEAT_S

    parser = _Parser(
        prog="samtune", description="Find the right Sharpness-Aware Minimization configuration for your data.",
        epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"samtune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("search", help="search SAM configurations on a data set and recommend one",
                       description="Run an Optuna study over SAM variant, rho, schedule, m and the "
                       "learning rate; confirm the best configurations on held-out data; write a "
                       "recommendation.", epilog=EPILOG)
    p.add_argument("--data", required=True, help="image folder, CSV or NPZ file, or builtin:digits|wine|breast_cancer")
    add_search_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("worker", help="join an existing study and run its trials (from any machine)",
                       description="Run trials of a study made by 'samtune search' until it holds its "
                       "target number of finished trials. Start the study first with samtune search "
                       "(with a PostgreSQL or MySQL --storage URL to share it between machines); the "
                       "data path must hold the same data on this machine.", epilog=EPILOG)
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True, help="the study's Optuna RDB URL")
    p.add_argument("--quota", type=_positive_int, default=None, help="run at most this many trials (default: until the study is done)")
    p.add_argument("--seed", type=int, default=None, help="sampler seed of this worker (default: random)")
    p.add_argument("--heartbeat", type=_positive_int, default=HEARTBEAT_S, help=f"seconds between heartbeats (default {HEARTBEAT_S})")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    p.add_argument("--metric", default=None, metavar="NAME|cost:FILE.csv",
                   help="the study's --metric, to check it (default: the one stored in the study; "
                   "another is refused)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("recommend", help="print the recommendation stored in a study")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///studies/STUDY.db)")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("--out", default=None, help="also write recommendation.json/.yaml to this folder")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("show", help="print a study's best trials as a table")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///studies/STUDY.db)")
    p.add_argument("--top", type=_positive_int, default=10, help="rows (default 10)")
    p.set_defaults(func=cmd_show)

    from samtune.inspect.cli import register as register_inspect  # dashboard, report

    register_inspect(sub)
    return parser


def cmd_search(args: argparse.Namespace) -> int:
    from samtune.search import search
    from samtune.search._options import SearchOptions
    from samtune.search._tables import confirmation_table

    names = {f.name for f in fields(SearchOptions)}
    options = {k: v for k, v in vars(args).items() if k in names}
    rec = search(args.data, **options, progress=not args.quiet)
    print(_show_study(rec.study["name"], options.get("storage"), 5))
    print()
    print(confirmation_table(rec.candidates, rec.metric))
    print()
    print(f"verdict: {rec.verdict}: {rec.summary}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from samtune.search import join

    join(args.study, args.storage, quota=args.quota, seed=args.seed, heartbeat=args.heartbeat,
         threads=args.threads, progress=not args.quiet, metric=args.metric)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    import json

    import yaml

    from samtune.search import stored_recommendation

    rec = stored_recommendation(args.study, args.storage)
    d = rec.to_dict()
    print(json.dumps(d, indent=2) if args.format == "json" else yaml.safe_dump(d, sort_keys=False), end="")
    if args.out:
        json_path, _ = rec.save(args.out)
        print(f"wrote {json_path} (and .yaml)", file=sys.stderr)
    return 0


def _show_study(study: str, storage: str | None, top: int) -> str:
    from samtune.search import top_trials_table
    from samtune.search._storage import default_storage_url, load_study, open_storage

    s = load_study(study, open_storage(storage or default_storage_url(study), create=False))
    return top_trials_table(s, top)


def cmd_show(args: argparse.Namespace) -> int:
    print(_show_study(args.study, args.storage, args.top))
    return 0


def _quiet_libraries() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samtune`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except SamtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are saved; run the same command again to resume.",
              file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: one line unless --debug
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
