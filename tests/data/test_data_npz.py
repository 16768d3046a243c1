from __future__ import annotations

import numpy as np
import pytest
import torch

from samtune.data import load_data
from samtune.errors import DataError


def _xy(n=40, shape=(6,), k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), np.arange(n) % k


def test_tabular_npz(tmp_path):
    x, y = _xy()
    path = tmp_path / "d.npz"
    np.savez(path, X=x, y=y * 10)
    ds = load_data(path)
    assert ds.kind == "tabular" and ds.input_shape == (6,)
    assert ds.classes == ["0", "10", "20", "30"]
    assert sorted(ds.y_train.unique().tolist()) == [0, 1, 2, 3]
    assert sum(ds.split_sizes().values()) == 40
    assert torch.allclose(ds.x_train.mean(0), torch.zeros(6), atol=1e-5)


def test_nhwc_images_with_own_test(tmp_path):
    x, y = _xy(30, (8, 8, 3), k=3)
    xt, yt = _xy(6, (8, 8, 3), k=3, seed=1)
    path = tmp_path / "img.npz"
    np.savez(path, x=x, y=y, x_test=xt, y_test=yt)
    ds = load_data(path, val_fraction=0.2)
    assert ds.kind == "image" and ds.input_shape == (3, 8, 8) and ds.augment and ds.flip
    assert ds.split_sizes() == {"train": 24, "val": 6, "test": 6}
    std = ds.x_train.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(std, torch.ones(3), atol=1e-4)


def test_nchw_and_3d_and_string_labels(tmp_path):
    x, _ = _xy(20, (1, 5, 5))
    y = np.array(["b", "a"] * 10)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    ds = load_data(tmp_path / "a.npz", image_size=7)
    assert ds.input_shape == (1, 7, 7) and ds.classes == ["a", "b"]
    np.savez(tmp_path / "b.npz", x=x[:, 0], y=y)
    assert load_data(tmp_path / "b.npz").input_shape == (1, 5, 5)


def test_own_val_and_test(tmp_path):
    x, y = _xy(20, k=2)
    np.savez(tmp_path / "v.npz", x=x, y=y, x_val=x[:4], y_val=y[:4], x_test=x[:6], y_test=y[:6])
    assert load_data(tmp_path / "v.npz").split_sizes() == {"train": 20, "val": 4, "test": 6}


def test_object_array_fails_cleanly(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, x=np.array([[1, "a"], [2, None]], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError) as err:
        load_data(path)
    assert "'x'" in str(err.value) and str(path) in str(err.value)


def test_nan_and_length_mismatch(tmp_path):
    x, y = _xy()
    x[3, 2] = np.nan
    np.savez(tmp_path / "n.npz", x=x, y=y)
    with pytest.raises(DataError, match="NaN"):
        load_data(tmp_path / "n.npz")
    np.savez(tmp_path / "m.npz", x=x[:10], y=y[:9])
    with pytest.raises(DataError, match="10 rows.*9 labels"):
        load_data(tmp_path / "m.npz")


def test_missing_keys_and_bad_file(tmp_path):
    np.savez(tmp_path / "k.npz", data=np.zeros((4, 2)))
    with pytest.raises(DataError, match="'x' and 'y'.*found data"):
        load_data(tmp_path / "k.npz")
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.npz"):
        load_data(tmp_path / "bad.npz")


def test_continuous_labels_rejected(tmp_path):
    x, _ = _xy(10)
    np.savez(tmp_path / "c.npz", x=x, y=np.linspace(0, 1, 10))
    with pytest.raises(DataError, match="classification"):
        load_data(tmp_path / "c.npz")
