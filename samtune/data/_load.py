"""``load_data``: read a source, split it, fit preprocessing on train, fingerprint it."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from samtune.data._builtin import load_builtin
from samtune.data._dataset import Dataset
from samtune.data._fingerprint import dataset_fingerprint
from samtune.data._folds import make_folds
from samtune.data._images import has_images, load_image_folder
from samtune.data._npz import load_npz
from samtune.data._raw import RawData
from samtune.data._split import encode_labels, split_indices
from samtune.data._tabular import load_csv
from samtune.errors import ConfigError, DataError


def _check_settings(
    seed: int, val_fraction: float, test_fraction: float, image_size: int | None
) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {frac!r}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction:g}"
        )
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")


def _read(source: str, target: str | None, image_size: int | None,
          drop: tuple[str, ...] = ()) -> tuple[RawData, bool]:
    """Dispatch on the source; returns the raw data and whether it is a CSV."""
    if source.startswith("builtin:"):
        return load_builtin(source.removeprefix("builtin:"), image_size), False
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"data path '{source}' does not exist; give an image folder, a .csv or .npz file, "
            "or builtin:digits|wine|breast_cancer"
        )
    if path.is_dir():
        csvs = sorted(
            f
            for f in path.iterdir()
            if f.is_file() and f.suffix.lower() == ".csv" and not f.name.startswith(".")
        )
        if csvs and not has_images(path):
            if len(csvs) > 1:
                names = ", ".join(f.name for f in csvs)
                raise DataError(
                    f"'{source}' holds several CSV files ({names}); pass one CSV file path"
                )
            return load_csv(csvs[0], target, drop), True
        return load_image_folder(path, image_size), False
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return load_csv(path, target, drop), True
    if suffix == ".npz":
        return load_npz(path, image_size), False
    raise DataError(
        f"unsupported file type '{path.suffix or '(none)'}' for '{source}'; "
        "use an image folder, .csv or .npz"
    )


def load_data(
    spec: str | os.PathLike,
    *,
    target: str | None = None,
    drop: Sequence[str] = (),
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    image_size: int | None = None,
    augment: bool | None = None,
) -> Dataset:
    """Load a classification data set and split it into train/val/test tensors.

    ``spec`` is ``builtin:digits|wine|breast_cancer``, an image folder, a folder
    holding one CSV, a ``.csv`` or an ``.npz`` file. Splits are stratified and
    deterministic per ``seed`` (see :mod:`samtune.data._split`); preprocessing
    is fitted on the train split only. ``augment`` defaults to on for images
    (flips on, except ``builtin:digits``) and is always off for tabular data.
    ``drop`` names CSV columns to leave out (ID-like columns are left out anyway, with a
    warning; see :mod:`samtune.data._tabular`).
    Raises :class:`~samtune.errors.DataError` for data that cannot be used.
    """
    _check_settings(seed, val_fraction, test_fraction, image_size)
    source = os.fspath(spec)
    drop = (drop,) if isinstance(drop, str) else tuple(drop)
    raw, is_csv = _read(source, target, image_size, drop)
    if target is not None and not is_csv:
        warnings.warn(
            f"target column '{target}' ignored: '{source}' is not a CSV file", stacklevel=2
        )
    if drop and not is_csv:
        warnings.warn(f"--drop {','.join(drop)} ignored: '{source}' is not a CSV file", stacklevel=2)
    return build_dataset(
        raw, source, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
        image_size=image_size, augment=augment,
    )


def build_dataset(
    raw: RawData,
    source: str,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    image_size: int | None = None,
    augment: bool | None = None,
) -> Dataset:
    """Split ``raw``, fit its preprocessing on train, fingerprint it."""
    classes, codes = encode_labels(raw.y, source)
    fractions = {
        s: f for s, f in (("test", test_fraction), ("val", val_fraction)) if s not in raw.x
    }
    idx = split_indices(codes["train"], classes, source=source, seed=seed, fractions=fractions)
    xs = {s: raw.x[s] for s in raw.x if s != "train"}
    ys = {s: codes[s] for s in codes if s != "train"}
    for split, rows in idx.items():
        xs[split], ys[split] = raw.x["train"][rows], codes["train"][rows]
    transform = raw.fit(xs["train"])
    tx = {
        s: torch.from_numpy(np.ascontiguousarray(transform(xs.get(s, xs["train"][:0]))))
        for s in ("train", "val", "test")
    }
    ty = {s: torch.from_numpy(ys.get(s, ys["train"][:0]).astype(np.int64)) for s in tx}
    input_shape = tuple(int(d) for d in tx["train"].shape[1:])
    sizes = {s: len(ty[s]) for s in tx}
    fingerprint = dataset_fingerprint(
        raw.content_hash,
        kind=raw.kind,
        target=raw.target,
        image_size=image_size if raw.kind == "image" else None,
        seed=seed,
        fractions=[float(val_fraction), float(test_fraction)],
        classes=classes,
        shapes={s: list(t.shape) for s, t in tx.items()},
        split_sizes=sizes,
    )
    if raw.kind != "image" and augment:
        warnings.warn(f"augmentation ignored: '{source}' is tabular", stacklevel=2)
    folds = None
    if "test" in idx:  # carved here: the confirmation may test on folds of all but val
        rest = np.sort(np.concatenate([idx["train"], idx["test"]]))
        folds = make_folds(raw.x["train"][rest], codes["train"][rest], xs["val"], ys["val"],
                           fit=raw.fit, seed=seed, test_fraction=test_fraction)
    return Dataset(
        source=source,
        kind=raw.kind,
        x_train=tx["train"],
        y_train=ty["train"],
        x_val=tx["val"],
        y_val=ty["val"],
        x_test=tx["test"],
        y_test=ty["test"],
        classes=classes,
        input_shape=input_shape,
        fingerprint=fingerprint,
        augment=raw.kind == "image" and (augment is None or bool(augment)),
        flip=raw.kind == "image" and raw.flip,
        skipped_files=list(raw.skipped_files),
        folds=folds,
    )
