"""Each example runs with a tiny budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script, args", [
    ("quickstart.py", ["--data", "builtin:wine", "--trials", "2", "--epochs", "1"]),
    ("custom_loop.py", ["--budget", "2", "--epochs", "1"]),
    ("image_folder.py", ["--trials", "2", "--epochs", "1"]),
    ("apply_recommendation.py", ["--epochs", "1"]),
])
def test_example_runs(script, args, tmp_path):
    extra = {"quickstart.py": ["--out", str(tmp_path)], "image_folder.py": ["--dir", str(tmp_path)],
             "custom_loop.py": ["--storage", f"sqlite:///{tmp_path / 'a.db'}"]}.get(script, [])
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args, *extra], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "accuracy" in proc.stdout or "recommendation" in proc.stdout
