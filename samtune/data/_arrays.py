"""Data sets from arrays already in memory: the user's own tensors, a torch Dataset or a
DataLoader. The features are used as they are (no normalization), since the user's own training
loop will feed the model the same values."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from samtune.data._dataset import Dataset
from samtune.data._load import _check_settings, build_dataset
from samtune.data._raw import RawData
from samtune.errors import DataError


def _identity_fit(x_train: np.ndarray):
    return lambda x: x.astype(np.float32, copy=False)


def _materialize(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays from a pair, a torch Dataset of (x, y) items, or a DataLoader."""
    if isinstance(data, tuple | list) and len(data) == 2 and not isinstance(data[0], tuple | list):
        x, y = data
    else:
        if isinstance(data, torch.utils.data.DataLoader):
            data = data.dataset  # in index order: a shuffling loader must not change the fingerprint
        loader = torch.utils.data.DataLoader(data, batch_size=1024, shuffle=False)
        xs, ys = [], []
        try:
            for item in loader:
                xb, yb = item[0], item[1]
                xs.append(torch.as_tensor(xb))
                ys.append(torch.as_tensor(yb))
        except (TypeError, IndexError) as exc:
            raise DataError(f"cannot read (inputs, targets) pairs from {type(data).__name__} ({exc}); pass (x, y) tensors or a Dataset yielding (x, y).") from None
        if not xs:
            raise DataError(f"{type(data).__name__} yielded no examples; pass a non-empty data set.")
        x, y = torch.cat(xs), torch.cat(ys)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    return x, y


def from_arrays(
    data: Any,
    *,
    source: str = "arrays",
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Dataset:
    """A :class:`Dataset` from ``(x, y)`` arrays/tensors, a torch ``Dataset`` or a ``DataLoader``.

    Features are kept as given (the caller's own preprocessing applies); labels are remapped to
    0..K-1. Splits are stratified and deterministic per ``seed``.

    >>> import torch
    >>> x, y = torch.randn(60, 4), torch.arange(60) % 3
    >>> from_arrays((x, y)).split_sizes()
    {'train': 42, 'val': 9, 'test': 9}
    """
    _check_settings(seed, val_fraction, test_fraction, None)
    x, y = _materialize(data)
    if x.ndim < 2 or len(x) != len(y):
        raise DataError(f"{source}: need x of shape (N, ...) and y of shape (N,), got {x.shape} and {y.shape}.")
    if x.dtype.kind not in "fiub" or not np.isfinite(x.astype(np.float64)).all():
        raise DataError(f"{source}: features must be finite numbers; clean NaN/inf values first.")
    if y.ndim != 1:
        raise DataError(f"{source}: targets must be class labels of shape (N,), got {y.shape}.")
    digest = hashlib.sha256()
    for arr in (x, y):
        digest.update(str((arr.dtype.str, arr.shape)).encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    raw = RawData(kind="image" if x.ndim == 4 else "tabular", x={"train": x}, y={"train": y},
                  content_hash=digest.hexdigest(), fit=_identity_fit, flip=False)
    return build_dataset(raw, source, seed=seed, val_fraction=val_fraction,
                         test_fraction=test_fraction, augment=False)
