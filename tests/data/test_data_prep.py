"""Known answers for the preprocessing fitted on the training split.

Val and test must be transformed with the *training* split's statistics (never their own), and a
CSV's missing numeric cells take the training median (not the mean: the data here is skewed).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from samtune.data import load_data
from samtune.data._prep import fit_channel_norm, fit_standard_scaler, resize_images
from samtune.data._split import encode_labels, split_indices


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_image_val_and_test_use_the_training_channel_statistics(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (12, 3, 8, 8)).astype(np.float32)
    x[:, 1] = x[:, 1] * 0.1 - 7  # channels with different statistics
    x_val = rng.normal(-5.0, 0.5, (6, 3, 8, 8)).astype(np.float32)  # other statistics than train
    x_test = rng.normal(9.0, 2.0, (6, 3, 8, 8)).astype(np.float32)
    y = np.arange(12) % 2
    path = _npz(tmp_path, x=x, y=y, x_val=x_val, y_val=np.arange(6) % 2,
                x_test=x_test, y_test=np.arange(6) % 2)
    ds = load_data(path, image_size=8)
    mean = x.astype(np.float64).mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    std = x.astype(np.float64).std(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    for got, raw in ((ds.x_train, x), (ds.x_val, x_val), (ds.x_test, x_test)):
        expected = torch.from_numpy(((raw - mean) / std).astype(np.float32))
        assert torch.allclose(got, expected, atol=1e-5)


def test_table_val_and_test_use_the_training_mean_and_std(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.exponential(4.0, (20, 3)) + np.array([0.0, 100.0, -3.0])
    x_val = rng.normal(50.0, 1.0, (6, 3))
    x_test = rng.normal(-20.0, 9.0, (6, 3))
    path = _npz(tmp_path, x=x, y=np.arange(20) % 2, x_val=x_val, y_val=np.arange(6) % 2,
                x_test=x_test, y_test=np.arange(6) % 2)
    ds = load_data(path)
    mean, std = x.mean(0), x.std(0)
    for got, raw in ((ds.x_train, x), (ds.x_val, x_val), (ds.x_test, x_test)):
        assert torch.allclose(got, torch.from_numpy(((raw - mean) / std).astype(np.float32)),
                              atol=1e-5)


def test_carved_val_and_test_rows_use_the_training_statistics(tmp_path):
    """No given splits: val/test carved from the pool, each row transformed with train's stats."""
    rng = np.random.default_rng(2)
    x = rng.lognormal(0.0, 1.0, (40, 1, 4, 4)).astype(np.float32)
    y = np.arange(40) % 2
    path = _npz(tmp_path, x=x, y=y)
    ds = load_data(path, seed=3, image_size=4)
    classes, codes = encode_labels({"train": y}, str(path))
    idx = split_indices(codes["train"], classes, source=str(path), seed=3,
                        fractions={"test": 0.15, "val": 0.15})
    train = x[idx["train"]].astype(np.float64)
    mean, std = train.mean(), train.std()
    for split, got in (("train", ds.x_train), ("val", ds.x_val), ("test", ds.x_test)):
        expected = ((x[idx[split]] - mean) / std).astype(np.float32)
        assert torch.allclose(got, torch.from_numpy(expected), atol=1e-5), split


def test_a_flat_channel_is_only_centered():
    x = np.zeros((4, 2, 3, 3))
    x[:, 0] = 5.0
    x[:, 1] = np.arange(4).reshape(4, 1, 1)
    out = fit_channel_norm(x)(x + 1.0)
    assert np.allclose(out[:, 0], 1.0)  # (6 - 5) / 1
    assert out.dtype == np.float32


def test_channel_statistics_are_accumulated_in_float64():
    """Pixels far from zero with a small spread: float32 accumulation would be off by ~1e-3."""
    rng = np.random.default_rng(4)
    x = (1e4 + rng.normal(0.0, 1.0, (64, 1, 16, 16))).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean()) / x64.std()
    assert np.abs(fit_channel_norm(x)(x) - expected).max() < 1e-5


def test_standard_scaler_of_an_empty_split_keeps_the_width():
    apply = fit_standard_scaler(np.arange(12.0).reshape(4, 3))
    assert apply(np.zeros((0, 3))).shape == (0, 3)
    assert apply(np.zeros((0, 3))).dtype == np.float32  # like every other split
    assert apply(np.ones((2, 3))).dtype == np.float32
    assert np.allclose(apply(np.array([[4.5, 5.5, 6.5]])), 0.0)


def test_resize_is_a_no_op_at_the_same_size_and_resizes_otherwise():
    x = np.random.default_rng(0).random((2, 1, 6, 6)).astype(np.float32)
    assert resize_images(x, None) is x and resize_images(x, 6) is x
    out = resize_images(x, 3)
    assert out.shape == (2, 1, 3, 3) and out.dtype == np.float32
    assert resize_images(x.astype(np.float64), 3).dtype == np.float32
    # antialiased: a low-pass filter, not a point sample of every other pixel
    samples = resize_images(x, 2)
    assert samples.var() < 0.5 * x[..., 1::3, 1::3].var()
    assert np.allclose(resize_images(np.ones((1, 1, 6, 6), np.float32), 2), 1.0)
    assert np.allclose(out.mean(axis=(2, 3)), x.mean(axis=(2, 3)), atol=0.02)  # a low-pass filter
    assert np.allclose(resize_images(np.full((1, 2, 6, 6), 0.3, np.float32), 4), 0.3)
    assert resize_images(x[:0], 3).shape == (0, 1, 6, 6)


@pytest.mark.parametrize("gap", ["", "NA"])
def test_missing_csv_cells_take_the_training_median_of_skewed_data(csv_file, gap):
    # x is skewed (most values small, a few huge): its mean is far from its median
    raw = [1.0 + (i % 7) + (500.0 if i % 9 == 0 else 0.0) for i in range(60)]
    missing = {4, 11, 23, 30, 47, 58}
    rows = [["x", "z", "label"]]
    for i in range(60):
        rows.append([gap if i in missing else raw[i], round(0.37 * ((i * 7) % 13), 2), i % 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = load_data(csv_file(rows), seed=5)
    labels = np.array([str(i % 3) for i in range(60)])
    classes, codes = encode_labels({"train": labels}, "csv")
    idx = split_indices(codes["train"], classes, source="csv", seed=5,
                        fractions={"test": 0.15, "val": 0.15})
    column = np.array([np.nan if i in missing else raw[i] for i in range(60)])
    train = column[idx["train"]]
    median = np.nanmedian(train)
    assert abs(median - np.nanmean(train)) > 20  # the data does tell median from mean
    filled = np.where(np.isnan(column), median, column)
    mean, std = filled[idx["train"]].mean(), filled[idx["train"]].std()
    for split, got in (("train", ds.x_train), ("val", ds.x_val), ("test", ds.x_test)):
        expected = (filled[idx[split]] - mean) / std
        assert torch.allclose(got[:, 0].double(), torch.from_numpy(expected), atol=1e-5), split
        gone = torch.from_numpy(np.isnan(column[idx[split]]))
        indicator = got[:, 2]  # x's missing indicator, after the numeric columns
        assert torch.equal(indicator > indicator.min(), gone) or not gone.any()


def test_resize_uses_pixel_centres_not_corners():
    # 2 -> 4 pixels: half-pixel centres give 0, 1/4, 3/4, 1 (corners would give 0, 1/3, 2/3, 1)
    x = np.array([[[[0.0, 1.0], [0.0, 1.0]]]], dtype=np.float32)
    assert np.allclose(resize_images(x, 4)[0, 0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
