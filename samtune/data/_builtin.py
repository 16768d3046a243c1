"""Small data sets bundled with scikit-learn (``builtin:NAME``; never downloaded)."""

from __future__ import annotations

import numpy as np
from sklearn import datasets

from samtune.data._fingerprint import ContentHasher
from samtune.data._prep import fit_channel_norm, fit_standard_scaler, resize_images
from samtune.data._raw import RawData
from samtune.errors import DataError

#: ``builtin:`` names and their sklearn loaders (bundled files only, no ``fetch_*``).
BUILTIN_DATASETS = {
    "digits": datasets.load_digits,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
}


def load_builtin(name: str, image_size: int | None) -> RawData:
    """Load ``builtin:NAME``.

    ``digits`` becomes 1x8x8 images (pixels / 16, then normalized; flips off,
    since digits are not mirror-symmetric); the others are tabular.
    """
    if name not in BUILTIN_DATASETS:
        avail = ", ".join(f"builtin:{n}" for n in BUILTIN_DATASETS)
        raise DataError(f"unknown built-in data set 'builtin:{name}'; available: {avail}")
    bunch = BUILTIN_DATASETS[name]()
    data, target = np.asarray(bunch.data), np.asarray(bunch.target)
    hasher = ContentHasher()
    hasher.add_file(f"builtin:{name}", b"")
    hasher.add_array("data", data)
    hasher.add_array("target", target)
    names = np.asarray([str(n) for n in bunch.target_names])
    y = {"train": names[target]} if name != "digits" else {"train": target}
    if name == "digits":
        x = (data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
        x = resize_images(x, image_size)
        return RawData("image", {"train": x}, y, hasher.hexdigest(), fit_channel_norm, flip=False)
    x = data.astype(np.float64)
    return RawData("tabular", {"train": x}, y, hasher.hexdigest(), fit_standard_scaler, flip=False)
