"""The bank's tasks: classification problems the project can make offline, chosen to disagree
about SAM (label noise, a spurious shortcut, clean data, a user's own 1-D conv net).

Every task is deterministic: its data come from fixed generator seeds (scikit-learn's bundled
digits and breast-cancer sets, ``make_classification``, and a signal generator of its own).
Label noise touches only the pool the search trains and validates on; the test split is
clean, so a test accuracy is a measure of what the user cares about. The search and the bank
see the same split: the pool is split into train/val by samtune's own stratified splitter with
seed 0, exactly as ``samtune search`` does for a data set that brings its own test split.

``Task.dataset()`` returns a ``samtune.data.Dataset``; ``Task.model_factory`` is ``None`` for
samtune's default model of the data kind, or a function returning the task's own
``nn.Module`` (the library path: ``samtune.autoconfigure`` on a user's model).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split
from torch import nn

from samtune.data import Dataset
from samtune.data._load import build_dataset
from samtune.data._prep import fit_channel_norm, fit_standard_scaler
from samtune.data._raw import RawData

VAL_FRACTION = 0.15  # samtune's default: carved from the pool


@dataclass(frozen=True)
class Task:
    """One bank task: how to make its data, its model and its training budget."""

    name: str
    description: str
    make: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # pool x, y; test x, y
    kind: str  # "tabular", "image" or "sequence" (the model decides; samtune sees tabular/image)
    epochs: int  # the task's full budget: long enough for SAM's slow start to pay off
    model: str | None = None  # None: samtune's default model; "own": ``own_model`` (autoconfigure)
    tags: tuple[str, ...] = field(default=())

    @property
    def library(self) -> bool:
        """True when the decision benchmark drives it through ``autoconfigure`` with its model."""
        return self.model == "own"

    def model_factory(self, dataset: Dataset) -> Callable[[], nn.Module] | None:
        if self.model != "own":
            return None
        return lambda: SignalNet(dataset.input_shape[0], dataset.num_classes)

    def dataset(self) -> Dataset:
        return _dataset(self.name)


# -- generators ---------------------------------------------------------------------------------


def _noisy(y: np.ndarray, fraction: float, k: int, seed: int) -> np.ndarray:
    """``y`` with ``fraction`` of its labels replaced by a different class, chosen at random."""
    rng = np.random.default_rng(seed)
    y = y.copy()
    flipped = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, k, size=len(flipped))) % k
    return y


def _split(x: np.ndarray, y: np.ndarray, test: float, seed: int):
    xp, xt, yp, yt = train_test_split(x, y, test_size=test, stratify=y, random_state=seed)
    return xp, yp, xt, yt


def _digits(noise: float) -> Callable[[], tuple]:
    def make():
        bunch = datasets.load_digits()
        x = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
        xp, yp, xt, yt = _split(x, bunch.target, 0.4, seed=11)
        return xp, _noisy(yp, noise, 10, seed=12), xt, yt
    return make


def _table(noise: float, seed: int, n: int = 5000, classes: int = 8) -> Callable[[], tuple]:
    def make():
        x, y = datasets.make_classification(
            n_samples=n, n_features=40, n_informative=16, n_redundant=8, n_classes=classes,
            n_clusters_per_class=2, class_sep=1.2, flip_y=0.0, random_state=seed)
        xp, yp, xt, yt = _split(x, y, 0.4, seed=seed + 1)
        return xp, _noisy(yp, noise, classes, seed=seed + 2), xt, yt
    return make


def _shortcut() -> tuple:
    """Weak real features plus a shortcut block: a noisy one-hot of the label in 90% of the pool's
    rows (of a random class in the rest), of a random class in every test row."""
    k = 5
    x, y = datasets.make_classification(
        n_samples=5000, n_features=20, n_informative=10, n_redundant=4, n_classes=k,
        n_clusters_per_class=2, class_sep=0.9, flip_y=0.0, random_state=31)
    xp, yp, xt, yt = _split(x, y, 0.4, seed=32)
    rng = np.random.default_rng(33)

    def block(labels: np.ndarray, agree: float) -> np.ndarray:
        hint = np.where(rng.random(len(labels)) < agree, labels, rng.integers(0, k, len(labels)))
        return 1.5 * np.eye(k)[hint] + rng.normal(0, 0.6, (len(labels), k))

    return (np.hstack([xp, block(yp, 0.9)]), yp, np.hstack([xt, block(yt, 0.0)]), yt)


def _breast_cancer() -> tuple:
    bunch = datasets.load_breast_cancer()
    return _split(bunch.data, bunch.target, 0.4, seed=41)


def _signals(noise: float) -> Callable[[], tuple]:
    """10 classes of 1-D signals of length 64: each class a pair of frequencies with its own
    envelope; random phase, amplitude and time shift per example, and white noise."""
    def make():
        rng = np.random.default_rng(51)
        k, n, length = 10, 4500, 64
        t = np.arange(length) / length
        f1 = rng.uniform(2, 9, k)
        f2 = rng.uniform(3, 14, k)
        env = rng.uniform(0.2, 0.8, k)
        y = rng.integers(0, k, n)
        phase = rng.uniform(0, 2 * np.pi, (n, 2))
        shift = rng.uniform(-0.15, 0.15, n)[:, None]
        amp = rng.uniform(0.6, 1.4, (n, 1))
        tt = t[None, :] + shift
        sig = (np.sin(2 * np.pi * f1[y][:, None] * tt + phase[:, :1])
               + 0.7 * np.sin(2 * np.pi * f2[y][:, None] * tt + phase[:, 1:])
               * np.exp(-((tt - env[y][:, None]) ** 2) / 0.05))
        x = (amp * sig + rng.normal(0, 0.9, (n, length))).astype(np.float32)[:, None, :]
        xp, yp, xt, yt = _split(x, y, 1 / 3, seed=52)
        return xp, _noisy(yp, noise, k, seed=53), xt, yt
    return make


class SignalNet(nn.Module):
    """A user's own 1-D conv net for (C, L) signals (not one of samtune's models)."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(channels, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("digits-noise30", "digits as 1x8x8 images, 30% of the pool's labels wrong; default CNN",
         _digits(0.3), "image", epochs=30, tags=("label-noise", "image")),
    Task("digits-clean", "digits as 1x8x8 images, clean labels; default CNN",
         _digits(0.0), "image", epochs=20, tags=("clean", "image")),
    Task("table-noise30", "40 features, 8 classes (make_classification), 30% of the pool's labels "
         "wrong; default MLP", _table(0.3, seed=21), "tabular", epochs=30,
         tags=("label-noise", "tabular")),
    Task("table-clean", "40 features, 8 classes (make_classification), clean; default MLP",
         _table(0.0, seed=61), "tabular", epochs=20, tags=("clean", "tabular")),
    Task("shortcut", "20 weak features plus a 5-dim label shortcut right in 90% of the pool and "
         "absent from the test split; default MLP", _shortcut, "tabular", epochs=20,
         tags=("spurious", "tabular")),
    Task("breast-cancer", "scikit-learn's breast cancer set (569 rows, 2 classes), clean; default MLP",
         _breast_cancer, "tabular", epochs=20, tags=("clean", "tabular", "small")),
    Task("signals-noise20", "1-D signals (1x64), 10 classes, 20% of the pool's labels wrong; the "
         "user's own Conv1d net through autoconfigure", _signals(0.2), "sequence", epochs=30,
         model="own", tags=("label-noise", "sequence", "library")),
)}


@cache
def _dataset(name: str) -> Dataset:
    task = {**TASKS, **QUICK_TASKS}[name]
    xp, yp, xt, yt = task.make()
    digest = hashlib.sha256()
    for arr in (xp, yp, xt, yt):
        digest.update(np.ascontiguousarray(arr).tobytes())
    if task.kind == "image":
        fit, kind = fit_channel_norm, "image"
    elif task.kind == "tabular":
        fit, kind = fit_standard_scaler, "tabular"
    else:  # a user's tensors: used as given, like samtune.data.from_arrays
        fit, kind = (lambda _x: (lambda x: x.astype(np.float32, copy=False))), "tabular"
    raw = RawData(kind, {"train": xp.astype(np.float32 if kind == "image" else np.float64),
                         "test": xt.astype(np.float32 if kind == "image" else np.float64)},
                  {"train": yp, "test": yt}, f"bank:{name}:{digest.hexdigest()}", fit, flip=False)
    if task.kind == "sequence":
        raw.x = {s: v.astype(np.float32) for s, v in raw.x.items()}
    return build_dataset(raw, f"bank:{name}", seed=0, val_fraction=VAL_FRACTION,
                         test_fraction=0.15)


def _tiny() -> tuple:
    x, y = datasets.make_classification(n_samples=300, n_features=8, n_informative=5,
                                        n_classes=3, random_state=71)
    xp, yp, xt, yt = _split(x, y, 0.4, seed=72)
    return xp, _noisy(yp, 0.2, 3, seed=73), xt, yt


# Not part of the bank: for smoke tests of the benchmark scripts (seconds).
QUICK_TASKS: dict[str, Task] = {
    "tiny": Task("tiny", "300 rows, 8 features, 3 classes, 20% noise; default MLP; 2 epochs",
                 _tiny, "tabular", epochs=2),
}
