from __future__ import annotations

import json

import pytest
import torch

from samtune.data import Dataset, load_data
from samtune.errors import DataError


def test_digits_shape_and_classes():
    ds = load_data("builtin:digits")
    assert isinstance(ds, Dataset)
    assert ds.kind == "image" and ds.input_shape == (1, 8, 8)
    assert ds.num_classes == 10 and ds.classes == [str(i) for i in range(10)]
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.augment and not ds.flip
    sizes = ds.split_sizes()
    assert sum(sizes.values()) == 1797 and sizes["test"] == sizes["val"] == 270
    assert abs(ds.x_train.mean().item()) < 1e-4
    assert ds.x_train.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name,features,n_classes", [("wine", 13, 3), ("breast_cancer", 30, 2)])
def test_tabular_builtins(name, features, n_classes):
    ds = load_data(f"builtin:{name}")
    assert ds.kind == "tabular" and ds.input_shape == (features,)
    assert ds.num_classes == n_classes and not ds.augment
    assert torch.allclose(ds.x_train.mean(0), torch.zeros(features), atol=1e-5)
    d = ds.describe()
    assert json.loads(json.dumps(d)) == d
    assert d["path"] == f"builtin:{name}" and d["split_sizes"] == ds.split_sizes()
    assert set(d) == {"fingerprint", "path", "kind", "classes", "input_shape", "split_sizes"}


def test_digits_image_size_resizes():
    assert load_data("builtin:digits", image_size=16).input_shape == (1, 16, 16)


def test_unknown_builtin_lists_names():
    with pytest.raises(DataError, match="builtin:nope") as err:
        load_data("builtin:nope")
    msg = str(err.value)
    assert "builtin:digits" in msg and "builtin:wine" in msg and "builtin:breast_cancer" in msg
