"""The search's metric (``--metric``): how a study stores it, matches it and names it.

The metrics themselves live in ``samtune.metrics``. A study stores the metric's name in its
settings, and for a cost metric the SHA-256 of the cost matrix: two studies share a metric
when the names match, or, for costs, when the matrices do (wherever the file lies). The run
record (``RunRecord``) keeps the matrix itself, so a worker on another machine needs no copy
of the file. Studies made before ``--metric`` have neither key and count as accuracy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samtune.metrics import Metric

ACCURACY = "accuracy"
_COST = "cost:"


def is_accuracy(metric: Metric | None) -> bool:
    """Whether ``metric`` is plain accuracy (None means accuracy)."""
    return metric is None or metric.name == ACCURACY


def digest(metric: Metric) -> str | None:
    """SHA-256 of a cost metric's matrix (little-endian float64, row-major); None otherwise."""
    if metric.cost_matrix is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(metric.cost_matrix, dtype="<f8").tobytes()).hexdigest()


def metric_settings(metric: Metric) -> dict[str, Any]:
    """The study-settings keys of ``metric``: ``metric`` (its name) and ``metric_digest``."""
    return {"metric": metric.name, "metric_digest": digest(metric)}


def metric_key(settings: dict[str, Any]) -> str:
    """What two studies' settings must share to be the same metric."""
    matrix = settings.get("metric_digest")
    return f"{_COST}{matrix}" if matrix else settings.get("metric") or ACCURACY


def metric_shown(settings: dict[str, Any]) -> str:
    """The metric of ``settings`` for a message: ``macro_f1``, ``cost:c.csv (matrix 3f2a9c1b0e4d)``."""
    name, matrix = settings.get("metric") or ACCURACY, settings.get("metric_digest")
    if not matrix:
        return name
    return f"{_COST}{Path(name[len(_COST):]).name} (matrix {matrix[:12]})"


def metric_from_run(name: str | None, cost_matrix: Any, num_classes: int) -> Metric:
    """The metric a run record stored (``RunRecord.metric``, ``RunRecord.cost_matrix``)."""
    matrix = None if cost_matrix is None else np.array(cost_matrix, dtype=float)
    return Metric(name or ACCURACY, num_classes, matrix)


def metric_label(metric: Metric | None) -> str:
    """The metric in a sentence: ``accuracy``, ``balanced accuracy``, ``mean cost``."""
    if metric is None:
        return ACCURACY
    if metric.cost_matrix is not None:
        return "mean cost"
    return metric.describe().split(":")[0]


def value_name(name: str | None) -> str:
    """The reported value of trials searched on the metric called ``name``, in progress lines
    and prune reasons: ``val_acc``, ``val_macro_f1``, ``val_neg_cost`` (minus the mean cost)."""
    name = name or ACCURACY
    if name == ACCURACY:
        return "val_acc"
    return "val_neg_cost" if name.startswith(_COST) else f"val_{name}"


def val_scorer(metric: Metric | None) -> Callable[[Any, Any], float] | None:
    """What ``train`` scores the validation split with (``val_metric``): the metric's utility,
    or None for accuracy, whose ``val_metric`` is then ``val_acc`` itself."""
    return None if is_accuracy(metric) else metric.utility


@dataclass(frozen=True)
class Scale:
    """How a difference of utilities is written: in percentage points for the scores in
    [0, 1], in the metric's own units for a cost, where a gain is a drop of the mean cost.

    >>> Scale().signed(0.03), Scale(cost=True).signed(0.08), Scale(cost=True).amount(0.05)
    ('+3.00 pp', '-0.0800', '0.0500')
    """

    cost: bool = False  # True: a cost metric

    def num(self, x: float) -> str:
        return f"{x:.4f}" if self.cost else f"{100 * x:.2f}"

    def amount(self, x: float) -> str:
        """A size (a standard error, a bound, a gain's magnitude) with its unit."""
        return self.num(x) if self.cost else f"{self.num(x)} pp"

    def signed(self, gain: float) -> str:
        """A gain with its sign: ``+3.00 pp``; for a cost, the change of the mean cost."""
        if self.cost:
            return f"{0.0 - gain:+.4f}"
        return f"+{self.amount(gain)}" if gain >= 0 else f"-{self.amount(-gain)}"


def scale_of(metric: Metric | None) -> Scale:
    return Scale(cost=metric is not None and metric.cost_matrix is not None)
