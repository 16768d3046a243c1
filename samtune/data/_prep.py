"""Preprocessing fitted on the training split: image normalization, scaling, resizing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.preprocessing import StandardScaler


def fit_channel_norm(x_train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Per-channel mean/std of ``(N, C, H, W)`` training images; returns the normalizer.

    A channel with zero spread is only centered.
    """
    mean = x_train.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x_train.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    mean = mean.reshape(1, -1, 1, 1)
    std = std.reshape(1, -1, 1, 1)

    def apply(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    return apply


def fit_standard_scaler(x_train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A :class:`~sklearn.preprocessing.StandardScaler` fitted on ``(N, F)`` training rows."""
    scaler = StandardScaler().fit(x_train)

    def apply(x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, x_train.shape[1]), dtype=np.float32)
        return scaler.transform(x).astype(np.float32)

    return apply


def resize_images(x: np.ndarray, size: int | None) -> np.ndarray:
    """Bilinearly resize ``(N, C, H, W)`` float images to ``size x size`` (no-op for ``None``)."""
    if size is None or len(x) == 0 or x.shape[2:] == (size, size):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.numpy()
