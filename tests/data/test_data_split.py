from __future__ import annotations

import pytest
import torch

from samtune.data import load_data
from samtune.errors import ConfigError, DataError


def test_same_seed_same_tensors(mixed_csv):
    a, b = load_data(mixed_csv, seed=3), load_data(mixed_csv, seed=3)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))


def test_different_seed_different_split():
    a, b = load_data("builtin:wine", seed=0), load_data("builtin:wine", seed=1)
    assert a.split_sizes() == b.split_sizes()
    assert not torch.equal(a.x_test, b.x_test)


def test_splits_are_stratified_and_disjoint():
    ds = load_data("builtin:digits")
    train = {tuple(r) for r in ds.x_train.flatten(1).tolist()}
    test = [tuple(r) for r in ds.x_test.flatten(1).tolist()]
    assert sum(r in train for r in test) < len(test) // 5  # digits has a few exact duplicates
    counts = torch.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 25 and counts.max() <= 29


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_fraction": 1.2},
        {"test_fraction": -0.1},
        {"val_fraction": 0.5, "test_fraction": 0.5},
        {"image_size": 0},
        {"seed": -1},
    ],
)
def test_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        load_data("builtin:wine", **kwargs)


def test_too_few_examples_for_classes(csv_file):
    path = csv_file([["a", "label"]] + [[i, i % 4] for i in range(12)])
    ds = load_data(path)  # 3 per class is enough: one each in train, val, test
    assert ds.split_sizes() == {"train": 4, "val": 4, "test": 4}
    with pytest.raises(DataError, match="too few examples") as err:
        load_data(path, val_fraction=0.4, test_fraction=0.5)
    assert str(path) in str(err.value)
