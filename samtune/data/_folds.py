"""Repeated stratified folds for the confirmation, when the data brings no test split.

A carved test split is a sixth of the data or less: too few examples to resolve gains of a
few points. When samtune carved it, the confirmation can instead test every example the search
did not validate on: the pool without the val split is cut into ``k`` stratified folds per
repeat, and confirmation run ``i`` trains on all folds but fold ``i % k`` of repeat ``i // k``
and tests on that fold. The val split is left out of every fold run's training and testing (the
search chose its configurations on it). Preprocessing is fitted on each run's own training rows,
as ``build_dataset`` fits it on the train split.

``k`` is ``round(1 / test_fraction)`` (7 for the default 0.15), so a fold run trains on about
as many examples as the search's trials did; fewer when a class has fewer examples than that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

MIN_FOLDS = 3  # below this a fold's training set is too small to stand for the search's


@dataclass
class Folds:
    """The folds of ``x``/``y`` (the pool without val, raw features and encoded labels)."""

    x: np.ndarray
    y: np.ndarray
    k: int
    seed: int
    fit: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]]
    x_val: np.ndarray  # raw val features: transformed with each run's own fit
    y_val: np.ndarray
    _splits: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        """Examples a full repeat tests (each once)."""
        return len(self.y)

    def indices(self, run: int) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, test rows) of confirmation run ``run``, as indices into ``x``."""
        repeat, fold = divmod(run, self.k)
        if repeat not in self._splits:
            cut = StratifiedKFold(n_splits=self.k, shuffle=True, random_state=self.seed + 7919 * repeat)
            self._splits[repeat] = [(np.sort(a), np.sort(b)) for a, b in cut.split(self.x, self.y)]
        return self._splits[repeat][fold]

    def dataset(self, base: Any, run: int) -> tuple[Any, np.ndarray]:
        """``base`` (the search's ``Dataset``) with run ``run``'s train and test splits, and the
        test rows' indices into the fold pool (for pairing examples across configurations)."""
        train, test = self.indices(run)
        transform = self.fit(self.x[train])

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(transform(a)))

        def labels(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a.astype(np.int64))

        data = replace(base, x_train=tensor(self.x[train]), y_train=labels(self.y[train]),
                       x_val=tensor(self.x_val), y_val=labels(self.y_val),
                       x_test=tensor(self.x[test]), y_test=labels(self.y[test]), folds=None)
        return data, test


def make_folds(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
               fit: Callable, seed: int, test_fraction: float) -> Folds | None:
    """Folds over the pool without val, or None when a class is too small for ``MIN_FOLDS``."""
    counts = np.bincount(y)
    k = min(max(MIN_FOLDS, round(1 / test_fraction)), int(counts[counts > 0].min()))
    if k < MIN_FOLDS:
        return None
    return Folds(x=x, y=y, k=k, seed=seed, fit=fit, x_val=x_val, y_val=y_val)
