"""CLI exit codes and messages."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from samtune.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "samtune.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, needle", [
    (["search", "--data", "/nonexistent/path"], "does not exist"),
    (["search", "--data", "builtin:nope"], "builtin"),
    (["search", "--data", "builtin:wine", "--space", "nope"], "neither a file nor a preset"),
    (["recommend", "--study", "nope", "--storage", "sqlite:////nonexistent-dir/x.db"], "no study database"),
])
def test_bad_input_exits_2_with_one_line(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err


@pytest.mark.parametrize("args", [
    ["search", "--data", "x", "--trials", "0"],
    ["search", "--data", "x", "--pruner", "nope"],
    ["search", "--data", "x", "--epochs", "two"],
    ["search"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(args):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2


def _search_flags_of_the_parser() -> set[str]:
    import argparse

    from samtune.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    search = sub.choices["search"]
    return {s for a in search._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


def _search_flags_of_the_readme() -> set[str]:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text()
    usage = text[text.index("samtune search --data PATH"):text.index("samtune worker --study")]
    return set(re.findall(r"--[a-z][a-z-]*", usage))


def test_help_documents_every_option():
    out = run("search", "--help").stdout
    flags = _search_flags_of_the_parser()
    assert {"--data", "--trials", "--top-k", "--device", "--threads", "--workers", "--heartbeat",
            "--quiet"} <= flags
    for flag in flags:
        assert re.search(rf"^  {re.escape(flag)}\b.*\S", out, re.M), flag  # listed, with text
    assert _search_flags_of_the_readme() == flags  # README's usage block names exactly these


@pytest.mark.slow
def test_search_recommend_show_round_trip(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    proc = run("search", "--data", "builtin:wine", "--trials", "2", "--epochs", "1", "--space", "quick",
               "--confirm-seeds", "1", "--top-k", "1", "--study", "cli", "--storage", storage,
               "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "[  2/2]" in proc.stderr and "verdict:" in proc.stdout
    assert (tmp_path / "out" / "recommendation.json").exists()
    rec = run("recommend", "--study", "cli", "--storage", storage)
    assert rec.returncode == 0 and "verdict:" in rec.stdout
    show = run("show", "--study", "cli", "--storage", storage)
    assert show.returncode == 0 and "variant" in show.stdout and "2 complete" in show.stdout
    missing = run("show", "--study", "other", "--storage", storage)
    assert missing.returncode == 2 and "no study named 'other'" in missing.stderr


@pytest.mark.parametrize("exc, code", [(RuntimeError("boom"), 1), (KeyboardInterrupt(), 130)])
def test_an_internal_error_exits_1_and_an_interrupt_130(exc, code, monkeypatch, capsys, tmp_path):
    import samtune.search._search as search_module

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(search_module, "load_data", fail)
    args = ["search", "--data", "builtin:wine", "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    assert main(args) == code
    err = capsys.readouterr().err.strip()
    if code == 1:
        assert err == "internal error: RuntimeError: boom (rerun with --debug for the traceback)"
        with pytest.raises(RuntimeError, match="boom"):
            main(["--debug", *args])
    else:
        assert err.startswith("interrupted:") and "resume" in err
