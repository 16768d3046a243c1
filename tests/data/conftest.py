"""Fixtures that write small data sets under ``tmp_path``."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, rng: np.random.Generator, size=(12, 10), mode="RGB") -> Path:
    """Write a random ``size`` (w, h) image in ``mode``; format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``image_folder(counts, sub="", size=(12, 10), mode="RGB", ext=".png")``."""
    rng = np.random.default_rng(0)

    def make(
        counts: dict[str, int],
        sub: str = "",
        size=(12, 10),
        mode="RGB",
        ext=".png",
        root: Path | None = None,
    ) -> Path:
        root = root or tmp_path / "images"
        for cls, n in counts.items():
            for i in range(n):
                write_image(root / sub / cls / f"{cls}_{i}{ext}", rng, size, mode)
        return root

    return make


@pytest.fixture
def csv_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``csv_file(rows, name="data.csv")`` writes rows (first row = header)."""

    def make(rows: list[list], name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
        return path

    return make


def mixed_rows(n: int = 40) -> list[list]:
    """A header plus ``n`` rows: numeric, categorical, and string labels."""
    rng = np.random.default_rng(1)
    rows: list[list] = [["age", "colour", "score", "label"]]
    for i in range(n):
        label = ["bird", "cat", "dog"][i % 3]
        rows.append(
            [
                int(rng.integers(18, 80)),
                ["red", "green", "blue"][i % 3 if i % 5 else 0],
                round(float(rng.normal()), 4),
                label,
            ]
        )
    return rows


@pytest.fixture
def mixed_csv(csv_file) -> Path:
    """A CSV with 2 numeric, 1 categorical (3 values) feature and 3 string classes."""
    return csv_file(mixed_rows())
