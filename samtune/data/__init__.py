"""Data loading for samtune: built-in sets, image folders, CSV and NPZ files.

:func:`load_data` returns a :class:`Dataset` of train/val/test tensors with
stratified, seed-deterministic splits, preprocessing fitted on the train split,
and a content fingerprint. See the submodules for the policies:
``_images`` (resize, colour, corrupt files), ``_tabular`` (CSV columns),
``_npz`` (array layouts), ``_split`` (splitting) and ``_augment`` (augmentation).
"""

from __future__ import annotations

from samtune.data._arrays import from_arrays
from samtune.data._builtin import BUILTIN_DATASETS
from samtune.data._dataset import Dataset
from samtune.data._images import IMAGE_EXTENSIONS
from samtune.data._load import load_data

__all__ = ["BUILTIN_DATASETS", "IMAGE_EXTENSIONS", "Dataset", "from_arrays", "load_data"]
