from __future__ import annotations

import numpy as np
from PIL import Image

from samtune.data import load_data

PINNED = "8441da0333da260dec2530a1b8dd5e62a1bddfb07b85e7f44f5a5b418e5ed8e2"


def test_stable_across_loads(mixed_csv):
    a = load_data(mixed_csv).fingerprint
    assert a == load_data(mixed_csv).fingerprint
    assert len(a) == 64 and int(a, 16) >= 0


def test_pinned_value(csv_file):
    # A fixed input must give a fixed fingerprint in every process (no hash(),
    # no dict-order or path dependence). Update deliberately if the recipe changes.
    path = csv_file([["a", "label"]] + [[i, i % 2] for i in range(20)])
    assert load_data(path).fingerprint == PINNED


def test_explicit_default_target_same_fingerprint(mixed_csv):
    assert load_data(mixed_csv, target="label").fingerprint == load_data(mixed_csv).fingerprint
    assert load_data("builtin:wine", test_fraction=0).fingerprint == (
        load_data("builtin:wine", test_fraction=0.0).fingerprint
    )


def test_builtin_stable():
    assert load_data("builtin:wine").fingerprint == load_data("builtin:wine").fingerprint


def test_changes_with_csv_cell(csv_file):
    rows = [["a", "b", "label"]] + [[i, i * 2, i % 2] for i in range(20)]
    path = csv_file(rows)
    before = load_data(path).fingerprint
    rows[7][1] = 999
    csv_file(rows)
    assert load_data(path).fingerprint != before


def test_changes_with_image_pixels(image_folder):
    root = image_folder({"a": 4, "b": 4})
    before = load_data(root).fingerprint
    target = root / "a" / "a_0.png"
    arr = np.asarray(Image.open(target)).copy()
    arr[0, 0, 0] ^= 1
    Image.fromarray(arr).save(target)
    assert load_data(root).fingerprint != before


def test_changes_with_seed_and_settings_not_augment():
    base = load_data("builtin:digits")
    assert load_data("builtin:digits", seed=1).fingerprint != base.fingerprint
    assert load_data("builtin:digits", val_fraction=0.2).fingerprint != base.fingerprint
    assert load_data("builtin:digits", image_size=10).fingerprint != base.fingerprint
    assert load_data("builtin:digits", augment=False).fingerprint == base.fingerprint


def test_independent_of_location(mixed_csv, tmp_path):
    other = tmp_path / "moved" / mixed_csv.name
    other.parent.mkdir()
    other.write_bytes(mixed_csv.read_bytes())
    assert load_data(other).fingerprint == load_data(mixed_csv).fingerprint
