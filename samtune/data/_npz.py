"""NumPy ``.npz`` archives: ``x``/``X`` and ``y`` (optional ``x_val``/``y_val``, ``x_test``/``y_test``).

``x`` of ndim 2 is tabular (standardized with train statistics); ndim 3
``(N, H, W)`` is 1-channel images; ndim 4 is images, read as NCHW when
``shape[1]`` is 1 or 3 and as NHWC otherwise. Arrays are loaded with
``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from samtune.data._fingerprint import ContentHasher
from samtune.data._prep import fit_channel_norm, fit_standard_scaler, resize_images
from samtune.data._raw import RawData
from samtune.errors import DataError


def _get(archive: np.lib.npyio.NpzFile, keys: tuple[str, ...], path: Path) -> np.ndarray | None:
    for key in keys:
        if key in archive.files:
            try:
                return archive[key]
            except ValueError:
                raise DataError(
                    f"array '{key}' in '{path}' holds Python objects; save plain numeric or "
                    "string arrays (np.savez with numeric dtypes)"
                ) from None
    return None


def _as_images(x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    return x if x.shape[1] in (1, 3) else x.transpose(0, 3, 1, 2)


def load_npz(path: Path, image_size: int | None) -> RawData:
    """Read an NPZ archive into :class:`RawData`."""
    data = path.read_bytes()
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        msg = " ".join(str(exc).split())
        raise DataError(f"cannot read '{path}' as NPZ ({msg}); save it with np.savez") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"'{path}' holds a single array, not an NPZ archive; save it with np.savez(x=..., y=...)"
        )
    xs, ys = {}, {}
    with archive:
        for split, suffix in (("train", ""), ("val", "_val"), ("test", "_test")):
            x = _get(archive, (f"x{suffix}", f"X{suffix}"), path)
            y = _get(archive, (f"y{suffix}", f"Y{suffix}"), path)
            if (x is None) != (y is None) or (split == "train" and x is None):
                raise DataError(
                    f"'{path}' must hold arrays 'x' and 'y' (and x_val/y_val, x_test/y_test in pairs); "
                    f"found {', '.join(archive.files) or 'none'}"
                )
            if x is not None:
                xs[split], ys[split] = x, y
    for split, x in xs.items():
        name = "x" if split == "train" else f"x_{split}"
        if x.dtype.kind not in "biuf":
            raise DataError(
                f"array '{name}' in '{path}' has type {x.dtype}; features must be numeric"
            )
        if len(x) != len(ys[split]):
            raise DataError(
                f"'{path}' has {len(x)} rows in '{name}' but {len(ys[split])} labels; they must match"
            )
        if x.ndim not in (2, 3, 4):
            raise DataError(
                f"array '{name}' in '{path}' has shape {x.shape}; use (N, F) tables or "
                "(N, H, W), (N, C, H, W), (N, H, W, C) images"
            )
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise DataError(
                f"array '{name}' in '{path}' contains NaN or inf; clean it before loading"
            )
        if x.ndim != xs["train"].ndim or x.shape[1:] != xs["train"].shape[1:]:
            raise DataError(
                f"array '{name}' in '{path}' has shape {x.shape} but 'x' has {xs['train'].shape}; "
                "all splits need the same per-example shape"
            )
    hasher = ContentHasher()
    hasher.add_file(path.name, data)
    if xs["train"].ndim == 2:
        xs = {s: v.astype(np.float64) for s, v in xs.items()}
        return RawData("tabular", xs, ys, hasher.hexdigest(), fit_standard_scaler, flip=False)
    xs = {s: resize_images(_as_images(v).astype(np.float32), image_size) for s, v in xs.items()}
    return RawData("image", xs, ys, hasher.hexdigest(), fit_channel_norm, flip=True)
