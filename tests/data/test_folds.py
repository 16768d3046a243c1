"""Confirmation folds: every example but val tested once per repeat, stratified, val untouched,
preprocessing refitted per run, and none when the data brings its own test split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samtune.data import from_arrays, load_data
from samtune.data._folds import make_folds


def _ids_dataset(n=210, k=3, seed=0):
    """Feature 0 is the example's id, so rows can be traced through the splits."""
    x = torch.stack([torch.arange(n, dtype=torch.float32), torch.randn(n)], 1)
    y = torch.arange(n) % k
    return from_arrays((x, y), seed=seed)


def _ids(t: torch.Tensor) -> set[int]:
    return {int(v) for v in t[:, 0].tolist()}


def test_a_repeat_tests_every_example_but_val_once_and_never_trains_on_val():
    ds = _ids_dataset()
    folds = ds.folds
    assert folds is not None and folds.k == 7  # round(1 / 0.15)
    val = _ids(ds.x_val)
    everything_but_val = set(range(210)) - val
    assert folds.n == len(everything_but_val)
    tested: list[int] = []
    for run in range(folds.k):
        data, rows = folds.dataset(ds, run)
        train, test = _ids(data.x_train), _ids(data.x_test)
        assert not train & test and not (train | test) & val
        assert train | test == everything_but_val
        assert _ids(data.x_val) == val and torch.equal(data.y_val, ds.y_val)
        assert sorted(int(v) for v in folds.x[rows][:, 0]) == sorted(test)  # rows index the pool
        assert data.folds is None and data.classes == ds.classes
        tested += sorted(test)
    assert sorted(tested) == sorted(everything_but_val)  # each exactly once


def test_folds_are_stratified_deterministic_and_reshuffled_per_repeat():
    ds = _ids_dataset(n=280, k=4)
    folds = ds.folds
    for run in range(folds.k):
        _, test = folds.indices(run)
        counts = np.bincount(folds.y[test], minlength=4)
        assert counts.max() - counts.min() <= 1
    again = _ids_dataset(n=280, k=4).folds
    assert all(np.array_equal(folds.indices(r)[1], again.indices(r)[1]) for r in range(folds.k))
    assert not np.array_equal(folds.indices(0)[1], folds.indices(folds.k)[1])  # repeat 1 differs


def test_preprocessing_is_refitted_on_each_runs_training_rows(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.csv"
    x = rng.normal(5.0, 3.0, size=(300, 3))
    y = rng.integers(0, 2, size=300)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="a,b,c,label", comments="",
               fmt=["%.6f"] * 3 + ["%d"])
    ds = load_data(path)
    assert ds.folds is not None
    data, _ = ds.folds.dataset(ds, 2)
    assert data.x_train.mean(0).abs().max() < 1e-4  # standardized on its own rows
    assert not torch.allclose(data.x_train[:5], ds.x_train[:5])


def test_no_folds_when_the_data_brings_its_test_split_or_a_class_is_too_small(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "own.npz"
    np.savez(path, x=rng.normal(size=(60, 4)), y=np.arange(60) % 2,
             x_test=rng.normal(size=(20, 4)), y_test=np.arange(20) % 2)
    assert load_data(path).folds is None
    assert load_data("builtin:wine").folds is not None
    y = np.array([0] * 50 + [1] * 2)
    assert make_folds(np.zeros((52, 1)), y, np.zeros((0, 1)), np.zeros(0, dtype=int),
                      fit=lambda a: (lambda b: b), seed=0, test_fraction=0.15) is None
    few = make_folds(np.zeros((54, 1)), np.array([0] * 50 + [1] * 4), np.zeros((0, 1)),
                     np.zeros(0, dtype=int), fit=lambda a: (lambda b: b), seed=0, test_fraction=0.15)
    assert few is not None and few.k == 4  # as many folds as the smallest class allows


@pytest.mark.parametrize("fraction, k", [(0.15, 7), (0.2, 5), (0.5, 3)])
def test_the_number_of_folds_follows_the_test_fraction(fraction, k):
    y = np.arange(300) % 2
    got = make_folds(np.zeros((300, 1)), y, np.zeros((0, 1)), np.zeros(0, dtype=int),
                     fit=lambda a: (lambda b: b), seed=0, test_fraction=fraction)
    assert got.k == k
