"""``samtune dashboard``: optuna-dashboard's JSON API serves the published study; the command's
errors, its URL, and a clean stop on Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from samtune.errors import SamtuneError
from samtune.inspect import curves_csv, default_artifact_dir, make_dashboard_server
from samtune.inspect._dashboard import _serve_until_stopped, open_target
from samtune.inspect._publish import FIGURES
from samtune.inspect.cli import register
from samtune.search._storage import open_storage


def cli(argv: list[str]) -> int:
    """``samtune`` with only the inspect commands, handling errors as samtune.cli.main does."""
    parser = argparse.ArgumentParser(prog="samtune")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SamtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
        return json.loads(body) if resp.headers.get_content_type() == "application/json" else body


def test_api_serves_the_study_trials_attributes_note_and_artifacts(served):
    study, base = served
    listed = get(f"{base}/api/studies")["study_summaries"]
    assert [(s["study_name"], s["study_id"]) for s in listed] == [(study.study_name, study._study_id)]
    detail = get(f"{base}/api/studies/{study._study_id}")
    assert len(detail["trials"]) == len(study.trials) == 4
    for served_trial, trial in zip(detail["trials"], study.trials):
        attrs = {a["key"]: a["value"] for a in served_trial["user_attrs"]}
        assert attrs["config_text"] == trial.user_attrs["config_text"]
        assert float(attrs["final_val_acc"]) == trial.user_attrs["final_val_acc"]
        (artifact,) = served_trial["artifacts"]
        assert artifact["filename"] == f"trial-{trial.number}-curves.csv"
        csv_text = get(f"{base}/artifacts/{study._study_id}/{trial._trial_id}/{artifact['artifact_id']}")
        assert csv_text.decode() == curves_csv(trial.user_attrs["history"])
    rec = study.user_attrs["recommendation"]
    study_attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
    assert f'"verdict": "{rec["verdict"]}"' in study_attrs["recommendation"]  # shown truncated
    assert "## samtune recommendation" in detail["note"]["body"] and rec["summary"] in detail["note"]["body"]
    assert {g["id"] for g in detail["plotly_graph_objects"]} == set(FIGURES)
    titles = {json.loads(g["graph_object"])["layout"]["title"]["text"] for g in detail["plotly_graph_objects"]}
    assert "Best validation accuracy per variant" in titles
    assert [a["filename"] for a in detail["artifacts"]] == ["recommendation.json"]
    assert get(f"{base}/api/meta")["artifact_is_available"] is True


def test_dashboard_needs_a_study_or_a_storage(capsys):
    assert cli(["dashboard"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--study" in err and "--storage" in err


def test_dashboard_errors_name_the_missing_database_and_study(made, tmp_path, capsys):
    assert cli(["dashboard", "--study", "t", "--storage", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "no study database" in capsys.readouterr().err
    assert cli(["dashboard", "--study", "nope", "--storage", made.url]) == 2
    err = capsys.readouterr().err
    assert "no study named 'nope'" in err and "t" in err  # lists the studies that are there
    assert cli(["report", "--study", "nope", "--storage", made.url]) == 2


def test_port_in_use_is_a_user_error(fresh, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(SamtuneError, match="pass another --port"):
            make_dashboard_server(open_storage(fresh.url, create=False), tmp_path, "127.0.0.1",
                                  busy.getsockname()[1])


def test_default_artifact_dir_is_beside_the_sqlite_file():
    assert default_artifact_dir("sqlite:///studies/digits.db") == Path("studies/artifacts")
    assert default_artifact_dir("sqlite:////abs/x/s.db") == Path("/abs/x/artifacts")
    assert default_artifact_dir("sqlite:///s.db") == Path("artifacts")
    assert default_artifact_dir("postgresql://u@h/db") == Path("samtune-out/artifacts")


def test_storage_without_study_serves_every_samtune_study(fresh):
    target = open_target(storage=fresh.url)
    assert target.study is None and [s.study_name for s in target.studies] == ["t"]
    assert target.artifact_dir == fresh.root / "artifacts"


# SIGINT as a terminal's Ctrl-C delivers it: a child of a background job inherits it ignored.
_SERVE = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {root!r})
from tests.inspect.test_dashboard import cli
sys.exit(cli(sys.argv[1:]))
"""


def test_command_prints_the_study_url_serves_it_and_stops_cleanly_on_ctrl_c(fresh):
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE.format(root=str(Path(__file__).parents[2])), "dashboard",
         "--study", "t", "--storage", fresh.url, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        line = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dashboard/studies/1", line), (line, proc.stderr.read() if proc.poll() is not None else "")
        base = line.split("/dashboard")[0]
        page = get(line)
        assert b"<html" in page.lower() and b"bundle.js" in page
        assert get(f"{base}/api/studies/1")["note"]["body"].startswith("## samtune recommendation")
        assert (fresh.root / "artifacts").is_dir()  # made on demand beside the database
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "press Ctrl-C to stop" in err


def test_sigterm_stops_the_server_after_the_request_in_flight(fresh, tmp_path):
    """In-process: the signal only sets a flag, so a request being served is finished first."""
    server = make_dashboard_server(open_storage(fresh.url, create=False), tmp_path, "127.0.0.1", 0)
    answers = []

    def client():
        answers.append(get(f"http://127.0.0.1:{server.server_port}/api/studies"))
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=client)
    thread.start()
    _serve_until_stopped(server)  # returns once SIGTERM arrives
    thread.join(5)
    assert answers[0]["study_summaries"][0]["study_name"] == "t"
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
    assert server.socket.fileno() == -1  # closed


def test_main_cli_offers_the_inspect_commands():
    from samtune.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "dashboard" not in sub.choices:
        pytest.skip("samtune/cli.py does not call samtune.inspect.cli.register yet")
    assert {"dashboard", "report"} <= set(sub.choices)
