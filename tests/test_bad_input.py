"""Bad input, table-driven: one line naming the problem and the fix, exit 2, no traceback,
and an existing study database left byte for byte as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from samtune.cli import main

BASE = ["--trials", "1", "--epochs", "1", "--confirm-seeds", "1", "--quiet"]


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished study whose database must never change."""
    root = tmp_path_factory.mktemp("existing")
    db = root / "study.db"
    assert main(["search", "--data", "builtin:wine", "--space", "quick", "--study", "old",
                 "--storage", f"sqlite:///{db}", "--out", str(root / "out"), "--top-k", "1", *BASE]) == 0
    return db


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(tmp: Path, case: str) -> list[str]:
    """Create the bad input of ``case``; return the CLI arguments that use it."""
    rng = np.random.default_rng(0)

    def image(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)

    def space(data) -> list[str]:
        (tmp / "space.yaml").write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
        return ["--data", "builtin:wine", "--space", str(tmp / "space.yaml")]

    if case == "empty folder":
        (tmp / "empty").mkdir()
        return ["--data", str(tmp / "empty")]
    if case == "one class":
        for i in range(5):
            image(tmp / "imgs" / "cat" / f"{i}.png")
        return ["--data", str(tmp / "imgs")]
    if case == "corrupt images":
        for c in ("a", "b"):
            for i in range(4):
                (tmp / "bad" / c).mkdir(parents=True, exist_ok=True)
                (tmp / "bad" / c / f"{i}.png").write_bytes(b"not a png at all")
        return ["--data", str(tmp / "bad")]
    if case == "csv without target":
        (tmp / "d.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
        return ["--data", str(tmp / "d.csv")]
    if case == "csv with inf features":
        (tmp / "d.csv").write_text("a,label\n" + "".join(f"{'inf' if i == 3 else i},{i % 2}\n" for i in range(20)))
        return ["--data", str(tmp / "d.csv")]
    if case == "csv with text in a numeric column":
        (tmp / "d.csv").write_text("a,label\n" + "".join(f"{'abc' if i == 5 else i},{i % 2}\n" for i in range(40)))
        return ["--data", str(tmp / "d.csv")]
    if case == "csv target column missing":
        (tmp / "d.csv").write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
        return ["--data", str(tmp / "d.csv"), "--target", "species"]
    if case == "npz length mismatch":
        np.savez(tmp / "d.npz", x=np.zeros((10, 3)), y=np.zeros(9))
        return ["--data", str(tmp / "d.npz")]
    if case == "unsupported file type":
        (tmp / "d.txt").write_text("hello")
        return ["--data", str(tmp / "d.txt")]
    if case == "m not dividing the batch":
        return [*space({"m": [None, 24]}), "--batch-size", "64"]
    if case == "negative rho in a space file":
        return space({"rho": {"default": {"low": -0.1, "high": 0.5}}})
    if case == "unknown variant in a space file":
        return space({"variants": ["sgd", "samm"]})
    if case == "malformed space file":
        return space("variants: [sgd, sam\nrho: {")
    if case == "space file that is a list":
        return space("- sgd\n- sam\n")
    if case == "data of another study under its name":
        return ["--data", "builtin:breast_cancer", "--study", "old"]
    if case in COST_FILES:
        (tmp / "costs.csv").write_text(COST_FILES[case])
        return ["--data", "builtin:wine", "--metric", f"cost:{tmp / 'costs.csv'}"]
    raise AssertionError(case)


# cost files for builtin:wine (classes class_0, class_1, class_2)
COST_FILES = {
    "cost file of the wrong shape": "0,1\n1,0\n",
    "cost file naming a class the data lacks": ",class_0,class_1,class_9\nclass_0,0,1,1\n"
                                               "class_1,1,0,1\nclass_9,1,1,0\n",
    "negative cost": "0,1,1\n1,0,-2\n1,1,0\n",
    "non-numeric cost": "0,1,1\n1,0,high\n1,1,0\n",
}


FILE_CASES = [
    "empty folder", "one class", "corrupt images", "csv without target", "csv with inf features",
    "csv with text in a numeric column", "csv target column missing", "npz length mismatch",
    "unsupported file type", "m not dividing the batch", "negative rho in a space file",
    "unknown variant in a space file", "malformed space file", "space file that is a list",
    "data of another study under its name", *COST_FILES,
]
NEEDLES = {
    "empty folder": "no supported images", "one class": "at least 2 classes",
    "corrupt images": "readable", "csv without target": "--target",
    "csv with inf features": "column 'a'", "csv with text in a numeric column": "abc",
    "csv target column missing": "species", "npz length mismatch": "10",
    "unsupported file type": "unsupported file type", "m not dividing the batch": "m=24",
    "negative rho in a space file": "rho.default.low", "unknown variant in a space file": "samm",
    "malformed space file": "cannot read search space", "space file that is a list": "mapping",
    "data of another study under its name": "different data",
    "cost file of the wrong shape": "need 3 x 3 costs", "cost file naming a class the data lacks":
    "'class_9'", "negative cost": "negative cost", "non-numeric cost": "'high'",
}
ARG_CASES = {
    "nonexistent path": (["--data", "/nonexistent/data"], "does not exist"),
    "unknown builtin": (["--data", "builtin:mnist"], "digits"),
    "unknown pruner": (["--data", "builtin:wine", "--pruner", "best"], "invalid choice"),
    "zero trials": (["--data", "builtin:wine", "--trials", "0"], "--trials"),
    "negative epochs": (["--data", "builtin:wine", "--epochs=-1"], "--epochs"),
    "negative lr": (["--data", "builtin:wine", "--lr=-0.1"], "--lr"),
    "zero batch size": (["--data", "builtin:wine", "--batch-size", "0"], "--batch-size"),
    "zero timeout": (["--data", "builtin:wine", "--timeout", "0"], "--timeout"),
    "unknown preset": (["--data", "builtin:wine", "--space", "huge"], "presets"),
    "unknown model": (["--data", "builtin:wine", "--model", "vit"], "vit"),
    "model factory that does not import": (["--data", "builtin:wine", "--model", "nopkg.nomod:make"], "nopkg.nomod"),
    # (m larger than the batch is no error: it means the whole batch; see tests/search/test_space.py)
    "batch size that is not a number": (["--data", "builtin:wine", "--batch-size", "abc"], "--batch-size"),
    "unreachable database": (["--data", "builtin:wine", "--storage", "postgresql+psycopg2://u@127.0.0.1:1/x"], "cannot open storage"),
    "storage that is not a URL": (["--data", "builtin:wine", "--storage", "studies.db"], "not a database URL"),
    "read-only study directory": (["--data", "builtin:wine", "--storage", "sqlite:////proc/samtune/x.db"], "/proc/samtune"),
    "zero workers": (["--data", "builtin:wine", "--workers", "0"], "--workers"),
    "max cost below the baseline's": (["--data", "builtin:wine", "--max-cost", "0.5"],
                                      "--max-cost must be a number >= 1"),
    "max cost that is not a number": (["--data", "builtin:wine", "--max-cost", "cheap"],
                                      "argument --max-cost: expected a number, got 'cheap'"),
    "unknown metric": (["--data", "builtin:wine", "--metric", "bogus"], "unknown metric 'bogus'"),
    "cost file that does not exist": (["--data", "builtin:wine", "--metric", "cost:/nonexistent/c.csv"],
                                      "cannot read cost matrix"),
    "metric of another study": (["--data", "builtin:wine", "--space", "quick", "--metric", "macro_f1"],
                                "different --metric accuracy vs macro_f1"),
}


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


def _check(code, err, needle):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("case", FILE_CASES)
def test_bad_files(case, tmp_path, existing, capsys):
    before = _digest(existing)
    args = _write(tmp_path, case)
    if "--study" not in args:
        args += ["--study", "old"]
    code, err = _run(["search", *args, "--storage", f"sqlite:///{existing}", *BASE], capsys)
    _check(code, err, NEEDLES[case])
    assert _digest(existing) == before


@pytest.mark.parametrize("case", sorted(ARG_CASES))
def test_bad_options(case, existing, capsys):
    before = _digest(existing)
    args, needle = ARG_CASES[case]
    if "--storage" not in args:
        args = [*args, "--storage", f"sqlite:///{existing}", "--study", "old"]
    code, err = _run(["search", *args, *BASE], capsys)
    _check(code, err, needle)
    assert _digest(existing) == before


def test_at_least_twenty_cases():
    assert len(FILE_CASES) + len(ARG_CASES) >= 20


@pytest.mark.parametrize("metric", ["bogus", "cost:/nonexistent/c.csv", "cost:{tmp}/costs.csv"])
def test_a_bad_metric_creates_no_study_and_no_database(metric, tmp_path, monkeypatch, capsys):
    (tmp_path / "costs.csv").write_text("0,1\n1,0\n")  # 2 x 2 for 3 classes
    monkeypatch.chdir(tmp_path)  # the default storage would be studies/wine.db here
    code, err = _run(["search", "--data", "builtin:wine", "--metric", metric.format(tmp=tmp_path),
                      *BASE], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not (tmp_path / "studies").exists()
    db = tmp_path / "named.db"
    code, err = _run(["search", "--data", "builtin:wine", "--metric", metric.format(tmp=tmp_path),
                      "--storage", f"sqlite:///{db}", *BASE], capsys)
    assert code == 2 and not db.exists()


def test_a_worker_given_another_metric_than_its_study_is_refused(existing, capsys):
    before = _digest(existing)
    storage = ["--storage", f"sqlite:///{existing}"]
    code, err = _run(["worker", "--study", "old", *storage, "--metric", "macro_f1"], capsys)
    _check(code, err, "study 'old' searches --metric accuracy, not macro_f1")
    code, err = _run(["worker", "--study", "old", *storage, "--metric", "nope"], capsys)
    _check(code, err, "unknown metric 'nope'")
    assert _digest(existing) == before
    assert main(["worker", "--study", "old", *storage, "--metric", "accuracy", "--quiet"]) == 0


@pytest.mark.parametrize("argv, needle", [
    (["recommend", "--study", "missing"], "no study named 'missing'"),
    (["show", "--study", "missing"], "no study named 'missing'"),
    (["worker", "--study", "missing"], "no study named 'missing'"),
])
def test_other_commands_on_a_missing_study(argv, needle, existing, capsys):
    before = _digest(existing)
    code, err = _run([*argv, "--storage", f"sqlite:///{existing}"], capsys)
    _check(code, err, needle)
    assert _digest(existing) == before
