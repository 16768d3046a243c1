"""What a wheel install gets: the search-space presets travel inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_the_presets(tmp_path):
    # samtune/presets is a link to studies/; a wheel must hold the files themselves, or
    # `samtune search --space quick` fails after `pip install samtune`.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("samtune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = sorted(p.name for p in (REPO / "studies").glob("*.yaml"))
    assert presets, "studies/ holds the presets"
    for name in presets:
        assert f"samtune/presets/{name}" in names
        assert zipfile.ZipFile(wheel).read(f"samtune/presets/{name}") == (REPO / "studies" / name).read_bytes()
