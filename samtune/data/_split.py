"""Label encoding and deterministic stratified train/val/test splitting.

Order of carving: the test split (``test_fraction`` of the pool) first, then the
val split (``val_fraction`` of the pool) from the rest, each with sklearn's
``train_test_split(..., stratify=labels, random_state=seed)``. A split the data
brings itself (a ``test/`` folder, ``x_test`` in an NPZ) is used as is. A carved
split has at least one example per class so stratification is possible.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import train_test_split

from samtune.errors import DataError

SPLITS = ("train", "val", "test")


def _clean_labels(y: np.ndarray, source: str, split: str) -> np.ndarray:
    """Check one split's labels are 1-D discrete values; return ints or strings."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"labels for the {split} split of '{source}' have shape {y.shape}; "
            "give one class label per example (a 1-D array, not one-hot)"
        )
    if y.dtype.kind == "S":
        y = y.astype(str)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
            raise DataError(
                f"labels in '{source}' include {bad!r}, which is not a class; "
                "samtune does classification, so use integer or string class labels"
            )
        y = y.astype(np.int64)
    if y.dtype.kind not in "biuU":
        raise DataError(
            f"labels in '{source}' have unsupported type {y.dtype}; use integer or string class labels"
        )
    return y


def encode_labels(y: dict[str, np.ndarray], source: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """Map raw labels to ``0..K-1`` (sorted unique training values); return classes and codes."""
    clean = {split: _clean_labels(v, source, split) for split, v in y.items()}
    kinds = {v.dtype.kind == "U" for v in clean.values() if len(v)}
    if len(kinds) > 1:
        raise DataError(
            f"labels in '{source}' mix numbers and strings across splits; use one label type"
        )
    uniq = np.unique(clean["train"])
    classes = [str(v) for v in uniq]
    if len(classes) < 2:
        found = f"only class '{classes[0]}'" if classes else "no labels"
        raise DataError(f"'{source}' has {found}; classification needs at least 2 classes")
    codes = {}
    for split, v in clean.items():
        if split != "train" and len(v):
            unknown = v[~np.isin(v, uniq)]
            if len(unknown):
                raise DataError(
                    f"class '{unknown[0]}' appears in the {split} split of '{source}' but not in "
                    "its training data; add training examples of it or remove it"
                )
        codes[split] = np.searchsorted(uniq, v).astype(np.int64)
    return classes, codes


def split_indices(
    y_pool: np.ndarray,
    classes: list[str],
    *,
    source: str,
    seed: int,
    fractions: dict[str, float],
) -> dict[str, np.ndarray]:
    """Carve the splits named in ``fractions`` (``"test"`` then ``"val"``) from the pool.

    Returns sorted index arrays into the pool for ``"train"`` and each carved split.
    """
    n, k = len(y_pool), len(classes)
    carved = [s for s in ("test", "val") if fractions.get(s, 0) > 0]
    need = 1 + len(carved)
    counts = np.bincount(y_pool, minlength=k)
    for c in np.flatnonzero(counts < need):
        names = "/".join(["train", *carved])
        raise DataError(
            f"class '{classes[c]}' in '{source}' has only {counts[c]} example(s) but a stratified "
            f"{names} split needs at least {need} per class; add examples of it or remove it"
        )
    rest = np.arange(n)
    out: dict[str, np.ndarray] = {}
    for split in carved:
        size = max(k, math.ceil(fractions[split] * n - 1e-9))
        if len(rest) - size < k:
            raise DataError(
                f"'{source}' has too few examples ({n}) to carve a {split} split of {size} "
                f"and keep all {k} classes in train; add data or lower the {split} fraction"
            )
        try:
            rest, taken = train_test_split(
                rest, test_size=size, stratify=y_pool[rest], random_state=seed
            )
        except ValueError as exc:
            msg = " ".join(str(exc).split())
            raise DataError(
                f"cannot split '{source}' stratified ({msg}); add examples or lower the fractions"
            ) from None
        out[split] = np.sort(taken)
    out["train"] = np.sort(rest)
    missing = sorted(set(range(k)) - set(y_pool[out["train"]].tolist()))
    if missing:
        raise DataError(
            f"class '{classes[missing[0]]}' of '{source}' ended up with no training examples; "
            "add examples of it or lower the val/test fractions"
        )
    return out
