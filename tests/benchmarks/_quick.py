"""Run a ``benchmarks/`` script's ``main`` in-process with ``--quick --json --out``."""

from __future__ import annotations

import importlib.util
import json
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(script: str):
    """Import ``benchmarks/<script>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"{script}_bench", BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def run_quick(script: str, out: Path, *extra: str) -> tuple[dict, dict]:
    """The JSON the quick run printed and the JSON it wrote to ``out``; the run must exit 0."""
    buf = StringIO()
    with redirect_stdout(buf):
        code = load(script).main(["--quick", "--json", "--out", str(out), *extra])
    assert code == 0
    return json.loads(buf.getvalue()), json.loads(out.read_text())
