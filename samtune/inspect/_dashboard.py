"""``serve``: optuna-dashboard on a study's storage, with samtune's curves, note and figures."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard

from samtune.errors import SamtuneError
from samtune.inspect._publish import artifact_store, publish
from samtune.inspect.cli import DEFAULT_HOST, DEFAULT_PORT
from samtune.search._search import SETTINGS_ATTR
from samtune.search._storage import (
    default_storage_url,
    load_study,
    mask_url,
    open_storage,
    sqlite_path,
)

ARTIFACTS_DIRNAME = "artifacts"  # beside the SQLite file: studies/artifacts
FALLBACK_ARTIFACT_DIR = Path("samtune-out") / ARTIFACTS_DIRNAME  # for server databases


@dataclass
class Target:
    """What the dashboard serves: a storage, its samtune studies, and where artifacts live."""

    storage: optuna.storages.BaseStorage
    storage_url: str
    studies: list[optuna.Study]  # the studies ``publish`` enriches
    study: optuna.Study | None  # the one asked for, if any (its page is the printed URL)
    artifact_dir: Path


def default_artifact_dir(storage_url: str) -> Path:
    """``<directory of the SQLite file>/artifacts``; ``samtune-out/artifacts`` for a server."""
    path = sqlite_path(storage_url)
    if path is not None and str(path) != ":memory:":
        return (path.parent if str(path.parent) else Path(".")) / ARTIFACTS_DIRNAME
    return FALLBACK_ARTIFACT_DIR


def open_target(study: str | None = None, storage: str | None = None,
                artifact_dir: str | Path | None = None) -> Target:
    """Resolve ``--study`` / ``--storage`` / ``--artifact-dir``; clear errors when missing."""
    if study is None and storage is None:
        raise SamtuneError("say which study to show: pass --study NAME (its database is "
                           "studies/NAME.db unless --storage says else) or --storage URL.")
    url = storage or default_storage_url(study)
    rdb = open_storage(url, create=False)
    if study is not None:
        chosen = load_study(study, rdb)
        studies = [chosen]
    else:
        chosen = None
        names = [s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)]
        if not names:
            raise SamtuneError(f"storage {mask_url(url)!r} holds no study; run 'samtune search' first.")
        studies = [s for s in (optuna.load_study(study_name=n, storage=rdb) for n in names)
                   if SETTINGS_ATTR in s.user_attrs]
    directory = Path(artifact_dir) if artifact_dir is not None else default_artifact_dir(url)
    return Target(rdb, url, studies, chosen, directory)


def _say(text: str) -> None:
    print(text, flush=True)  # flushed: a caller reading a pipe sees the URL at once


def dashboard_url(host: str, port: int, study: optuna.Study | None = None) -> str:
    shown = f"[{host}]" if ":" in host else host
    page = f"/dashboard/studies/{study._study_id}" if study is not None else "/dashboard"
    return f"http://{shown}:{port}{page}"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        pass  # one line per request would bury the URL


def make_dashboard_server(storage: optuna.storages.BaseStorage, artifact_dir: str | Path,
                          host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> WSGIServer:
    """A bound (not yet serving) WSGI server running optuna-dashboard; port 0 picks a free one."""
    app = optuna_dashboard.wsgi(storage, artifact_store=artifact_store(artifact_dir))

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        return make_server(host, port, app, server_class=Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise SamtuneError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                           "pass another --port (or --host).") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(study: str | None = None, storage: str | None = None, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, artifact_dir: str | Path | None = None, *,
          say: Callable[[str], None] = _say) -> None:
    """Publish (see ``publish``) and serve optuna-dashboard until Ctrl-C, then return."""
    try:
        target = open_target(study, storage, artifact_dir)
        for s in target.studies:
            done = publish(s, target.artifact_dir)
            print(f"published study {s.study_name!r}: {done.artifacts_added} new artifact(s), "
                  f"note {'updated' if done.note_saved else 'unchanged'}, {len(done.figures)} "
                  f"figures (artifacts in {target.artifact_dir})", file=sys.stderr)
        server = make_dashboard_server(target.storage, target.artifact_dir, host, port)
    except KeyboardInterrupt:
        return
    if not _is_loopback(host):
        print(f"warning: the dashboard listens on {host}, beyond this machine; it has no "
              "authentication and anyone who reaches it can edit the study.", file=sys.stderr)
    say(dashboard_url(host, server.server_port, target.study))
    print("serving optuna-dashboard; press Ctrl-C to stop", file=sys.stderr, flush=True)
    _serve_until_stopped(server)


def _serve_until_stopped(server: WSGIServer) -> None:
    """Serve until Ctrl-C (or SIGTERM). The signal only sets a flag: raised inside a request,
    KeyboardInterrupt would be swallowed by wsgiref's error handler and the server kept on."""
    stop = threading.Event()
    handled = (signal.SIGINT, signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in handled} if in_main else {}
    server.timeout = 0.2  # seconds between looks at the flag
    try:
        with warnings.catch_warnings():
            # optuna's importances warn about small studies on page loads; the page is enough
            warnings.filterwarnings("ignore", message="Some regimes for parameter")
            while not stop.is_set():
                server.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        server.server_close()
