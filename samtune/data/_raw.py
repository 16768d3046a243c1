"""The intermediate form every loader produces before splitting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Fits on the training features and returns the transform for every split.
Fitter = Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]]


@dataclass
class RawData:
    """Unsplit, unnormalized data as read from a source.

    ``x`` and ``y`` map ``"train"`` (the pool that val/test are carved from) and,
    when the source brings them, ``"val"`` and ``"test"`` to arrays with one row
    per example. ``fit`` is fitted on the final training rows only.
    ``target`` is the resolved label column of a CSV (``None`` otherwise).
    """

    kind: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    content_hash: str
    fit: Fitter
    flip: bool = True
    skipped_files: list[str] = field(default_factory=list)
    target: str | None = None  # the CSV label column actually used
