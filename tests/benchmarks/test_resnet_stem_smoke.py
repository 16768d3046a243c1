"""Smoke test of benchmarks/resnet_stem.py: a tiny run prints one JSON object.

No performance assertion: the ratio belongs to benchmarks/RESULTS.md, not to CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "resnet_stem.py"


def test_a_tiny_run_prints_both_stems_and_their_ratio():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--side", "40", "--batch", "2", "--rounds", "1",
         "--steps", "1", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["median_step_s"]) == {"sized", "cifar"}
    assert result["cifar_over_sized"] > 0
