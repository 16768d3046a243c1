"""CLI exit codes and messages."""

from __future__ import annotations

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


def test_help_documents_every_option():
    out = run("search", "--help").stdout
    for flag in ("--data", "--trials", "--timeout", "--epochs", "--batch-size", "--study", "--storage",
                 "--pruner", "--space", "--lr", "--model", "--target", "--seed", "--out", "--confirm-seeds"):
        assert flag in out


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
