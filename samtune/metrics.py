"""Test metrics for ``--metric``: what a configuration is judged on, and a paired SE for gains.

Every metric is a function of the K x K confusion matrix C (rows true class, columns
predicted class, N examples). Recall of class k is C[k, k] / sum(C[k, :]), 0 when class k
has no examples; these are scikit-learn's definitions, and the tests check each against it.

- ``accuracy``: trace(C) / N.
- ``balanced_accuracy``: mean recall over the classes present in ``y_true``
  (``sklearn.metrics.balanced_accuracy_score``).
- ``macro_f1``: mean over all K classes of 2 C[k, k] / (sum(C[k, :]) + sum(C[:, k])), 0 for a
  class never true nor predicted (``f1_score(average="macro", labels=range(K),
  zero_division=0)``).
- ``worst_class_recall``: the smallest recall over all K classes (``recall_score(average=None,
  labels=range(K), zero_division=0).min()``).
- ``cost:FILE.csv``: mean of cost[y_true, y_pred] over the examples, with a user's K x K matrix
  of non-negative costs; lower is better.

``score`` calls scikit-learn's function for each metric. The bootstrap below rescores
thousands of resamples, so it computes the same definitions from one confusion matrix per
resample built with ``np.bincount`` (``f1_score`` alone costs about 3 ms a call at N = 10,000,
the bincount about 0.02 ms); the tests check the two agree.

``utility`` is the score, or minus the cost, so callers always maximize. ``paired_gain``
compares two configurations, each trained with one or more seeds and tested on the same
examples: the gain is the difference of their seed-mean utilities, and its squared SE adds

- the test-example term. For accuracy and cost (decomposable: a mean of per-example
  contributions u_i) it is var(d, ddof=1) / N, with d_i the seed-mean u_i under a minus under
  b. For the other metrics it is the variance (ddof=1) of the gain over a paired bootstrap:
  the same resampled example indices for both sides and every seed.
- the training-seed term of each side with more than one seed: var(per-seed utilities,
  ddof=1) / number of seeds. For a decomposable metric the part of it that the examples'
  flips from seed to seed explain (mean_i var_seeds(u_i) / N) is already in the example term
  and is taken out (never below 0), as for samtune's accuracy verdict
  (``samtune/search/_evidence.py``); for the other metrics that part is the spread the
  per-seed utilities have once each example's predictions are shuffled across the seeds
  (which keeps every flip and drops what the seeds share).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samtune.errors import ConfigError

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "worst_class_recall")
_COST = "cost:"
_DECOMPOSABLE = ("accuracy",)  # and every cost: metric
_DESCRIPTIONS = {
    "accuracy": "accuracy: fraction of test examples classified correctly",
    "balanced_accuracy": "balanced accuracy: mean recall over the classes",
    "macro_f1": "macro F1: mean F1 score over the classes",
    "worst_class_recall": "worst-class recall: recall of the class recognized least often",
}


@dataclass(frozen=True)
class Metric:
    """One test metric over ``num_classes`` classes; build it with :func:`parse_metric`.

    >>> m = Metric("accuracy", num_classes=2)
    >>> m.score([0, 1, 1, 0], [0, 1, 0, 0]), m.greater_is_better, m.decomposable
    (0.75, True, True)
    """

    name: str  # one of METRICS, or "cost:" and the CSV's absolute path
    num_classes: int  # K: labels are the indices 0..K-1
    cost_matrix: np.ndarray | None = field(default=None, compare=False, repr=False)  # K x K
    greater_is_better: bool = field(init=False)  # False for a cost

    def __post_init__(self) -> None:
        is_cost = self.name.startswith(_COST)
        if not is_cost and self.name not in METRICS:
            raise ValueError(f"name must be one of {METRICS} or 'cost:FILE', but got {self.name=}.")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, but got {self.num_classes=}.")
        if is_cost:
            k = self.num_classes
            if self.cost_matrix is None or np.shape(self.cost_matrix) != (k, k):
                raise ValueError(f"a cost metric needs a {k} x {k} cost_matrix.")
            matrix = np.array(self.cost_matrix, dtype=float)  # a private, read-only copy
            matrix.setflags(write=False)
            object.__setattr__(self, "cost_matrix", matrix)
        elif self.cost_matrix is not None:
            raise ValueError(f"only a cost metric takes a cost_matrix, but got {self.name=}.")
        object.__setattr__(self, "greater_is_better", not is_cost)

    @property
    def decomposable(self) -> bool:
        """True when the metric is a mean over test examples (accuracy, cost)."""
        return self.cost_matrix is not None or self.name in _DECOMPOSABLE

    def score(self, y_true: Any, y_pred: Any) -> float:
        """The metric's value on one prediction vector (for a cost: the mean cost), by
        scikit-learn's function for it."""
        import warnings

        from sklearn import metrics as skm

        t, p = self._labels(y_true, y_pred)
        if self.cost_matrix is not None:
            return float(self.cost_matrix[t, p].mean())
        labels = list(range(self.num_classes))
        if self.name == "accuracy":
            return float(skm.accuracy_score(t, p))
        if self.name == "balanced_accuracy":
            with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected
                warnings.simplefilter("ignore", UserWarning)
                return float(skm.balanced_accuracy_score(t, p))
        if self.name == "worst_class_recall":
            return float(skm.recall_score(t, p, labels=labels, average=None, zero_division=0).min())
        return float(skm.f1_score(t, p, labels=labels, average="macro", zero_division=0))

    def utility(self, y_true: Any, y_pred: Any) -> float:
        """``score``, or minus the cost: higher is always better."""
        value = self.score(y_true, y_pred)
        return value if self.greater_is_better else -value

    def per_example(self, y_true: Any, y_pred: Any) -> np.ndarray:
        """Each example's contribution to ``utility``, whose mean it is (decomposable only)."""
        if not self.decomposable:
            raise ValueError(f"{self.name} is not a mean over examples; it has no per-example values.")
        t, p = self._labels(y_true, y_pred)
        if self.cost_matrix is not None:
            return -self.cost_matrix[t, p]
        return (t == p).astype(float)

    def paired_gain(
        self, y_true: Any, preds_a: Sequence[Any], preds_b: Sequence[Any], *,
        n_boot: int = 2000, seed: int = 0, method: str = "auto",
    ) -> tuple[float, float]:
        """Seed-mean utility of ``preds_a`` minus that of ``preds_b``, and its standard error.

        ``preds_a`` and ``preds_b`` hold one prediction vector per training seed, all on the
        examples of ``y_true``. ``method`` is "analytic" (decomposable metrics only),
        "bootstrap" (``n_boot`` resamples drawn with ``numpy.random.default_rng(seed)``) or
        "auto": analytic where the metric allows it. See the module docstring for the SE.
        """
        parts = self.paired_gain_parts(y_true, preds_a, preds_b, n_boot=n_boot, seed=seed,
                                       method=method)
        return parts["gain"], math.sqrt(parts["example_var"] + parts["seed_var"])

    def paired_gain_parts(
        self, y_true: Any, preds_a: Sequence[Any], preds_b: Sequence[Any], *,
        n_boot: int = 2000, seed: int = 0, method: str = "auto",
    ) -> dict[str, float]:
        """``paired_gain``'s pieces: ``gain``, ``example_var`` (the test-example term),
        ``seed_var`` (the seed terms, what the examples' flips do not explain; per side in
        ``seed_vars``) and
        ``flip_var`` (the flips' share of the example term, which more seeds shrink: the sum
        over both sides of the flips' spread over the side's seeds)."""
        if method not in ("auto", "analytic", "bootstrap"):
            raise ValueError(
                f"method must be 'auto', 'analytic' or 'bootstrap', but got {method=}."
            )
        if method == "analytic" and not self.decomposable:
            raise ValueError(f"{self.name} is not a mean over examples; use method='bootstrap'.")
        if not preds_a or not preds_b:
            raise ValueError("preds_a and preds_b need at least one prediction vector each.")
        t = self._indices(y_true, "y_true")
        if len(t) < 2:
            raise ValueError(f"a standard error needs at least 2 test examples, but got {len(t)}.")
        a = np.stack([self._labels(t, p)[1] for p in preds_a])  # (S_a, N)
        b = np.stack([self._labels(t, p)[1] for p in preds_b])  # (S_b, N)
        u_a = self._utilities(_confusion(t, a, self.num_classes))  # per-seed utilities
        u_b = self._utilities(_confusion(t, b, self.num_classes))
        gain = float(u_a.mean() - u_b.mean())
        if method == "bootstrap" or not self.decomposable:
            example_var = self._bootstrap_var(t, a, b, n_boot, seed)
            flips = [self._flip_var(t, side, seed) for side in (a, b)]
        else:
            per = [np.stack([self.per_example(t, p) for p in side]) for side in (a, b)]
            d = per[0].mean(0) - per[1].mean(0)
            example_var = float(np.var(d, ddof=1)) / len(d)
            flips = [float(u.var(0, ddof=1).mean()) / len(d) if len(u) > 1 else 0.0 for u in per]
        seed_vars = [max(0.0, float(np.var(u, ddof=1)) - f) / len(u) if len(u) > 1 else 0.0
                     for u, f in zip((u_a, u_b), flips)]
        flip_var = sum(f / len(u) for u, f in zip((u_a, u_b), flips) if len(u) > 1)
        return {"gain": gain, "example_var": example_var, "seed_var": sum(seed_vars),
                "seed_vars": seed_vars, "flip_var": min(flip_var, example_var)}

    def describe(self) -> str:
        """One short line saying what the metric measures and which way is better."""
        if self.cost_matrix is not None:
            file = Path(self.name[len(_COST):]).name
            return f"{_COST}{file}: mean misclassification cost (lower is better)"
        return f"{_DESCRIPTIONS[self.name]} (higher is better)"

    def _labels(self, y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
        t, p = self._indices(y_true, "y_true"), self._indices(y_pred, "y_pred")
        if len(t) != len(p):
            raise ValueError(
                f"y_true and y_pred must be equally long, but got {len(t)} and {len(p)}."
            )
        return t, p

    def _indices(self, y: Any, name: str) -> np.ndarray:
        if hasattr(y, "detach"):  # a torch tensor, possibly on a GPU
            y = y.detach().cpu().numpy()
        y = np.asarray(y)
        if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{name} must be a non-empty 1-D array of integer class indices, "
                f"but got {y.dtype} of shape {y.shape}."
            )
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(
                f"{name} must hold class indices 0..{self.num_classes - 1}, "
                f"but holds {y.min()}..{y.max()}."
            )
        return y.astype(np.int64, copy=False)

    def _from_confusion(self, counts: np.ndarray) -> np.ndarray:
        """The score of each confusion matrix in a stack of shape (..., K, K)."""
        n = counts.sum(axis=(-2, -1))
        if self.cost_matrix is not None:
            return (counts * self.cost_matrix).sum(axis=(-2, -1)) / n
        hits = np.diagonal(counts, axis1=-2, axis2=-1)
        if self.name == "accuracy":
            return hits.sum(axis=-1) / n
        support = counts.sum(axis=-1)  # examples of each true class
        recall = _ratio(hits, support)
        if self.name == "balanced_accuracy":
            present = support > 0
            return (recall * present).sum(axis=-1) / present.sum(axis=-1)
        if self.name == "worst_class_recall":
            return recall.min(axis=-1)
        return _ratio(2 * hits, support + counts.sum(axis=-2)).mean(axis=-1)  # macro_f1

    def _utilities(self, counts: np.ndarray) -> np.ndarray:
        values = self._from_confusion(counts)
        return values if self.greater_is_better else -values

    def _flip_var(self, t: np.ndarray, preds: np.ndarray, seed: int, n_perm: int = 50) -> float:
        """The spread (variance, ddof=1) the per-seed utilities of ``preds`` (S, N) would have
        if their seeds shared nothing: each example's predictions shuffled across the seeds
        (the mean over ``n_perm`` shuffles). For a mean over examples it is mean_i
        var_seeds(u_i) / N."""
        if len(preds) < 2:
            return 0.0
        rng = np.random.default_rng(seed + 1)
        out = []
        for _ in range(n_perm):
            order = np.argsort(rng.random(preds.shape), axis=0)
            shuffled = np.take_along_axis(preds, order, axis=0)
            out.append(float(np.var(self._utilities(_confusion(t, shuffled, self.num_classes)), ddof=1)))
        return float(np.mean(out))

    def _bootstrap_var(
        self, t: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int, seed: int
    ) -> float:
        """Variance of the gain over ``n_boot`` paired resamples of the test examples."""
        if n_boot < 2:
            raise ValueError(f"n_boot must be at least 2, but got {n_boot=}.")
        k = self.num_classes
        codes_a, codes_b = _codes(t, a, k), _codes(t, b, k)
        rng = np.random.default_rng(seed)
        gains = np.empty(n_boot)
        for i in range(n_boot):
            idx = rng.integers(0, len(t), len(t))  # the same examples for both sides, every seed
            u_a = self._utilities(_count(codes_a[:, idx], len(a), k))
            u_b = self._utilities(_count(codes_b[:, idx], len(b), k))
            gains[i] = u_a.mean() - u_b.mean()
        return float(np.var(gains, ddof=1))


def confusion(y_true: Any, y_pred: Any, num_classes: int) -> list[list[int]]:
    """The K x K confusion matrix: row true class, column predicted class.

    >>> confusion([0, 1, 1], [0, 0, 1], num_classes=2)
    [[1, 0], [1, 1]]
    """
    t, p = Metric("accuracy", num_classes)._labels(y_true, y_pred)
    return _confusion(t, p[None], num_classes)[0].tolist()


def per_class_recall(y_true: Any, y_pred: Any, num_classes: int) -> list[float]:
    """Recall of each class 0..K-1 (0 for a class with no examples).

    >>> per_class_recall([0, 1, 1, 2], [0, 0, 1, 1], num_classes=3)
    [1.0, 0.5, 0.0]
    """
    counts = np.array(confusion(y_true, y_pred, num_classes))
    return _ratio(np.diagonal(counts), counts.sum(axis=1)).tolist()


def parse_metric(spec: str | None, classes: Sequence[str]) -> Metric:
    """The metric named by ``spec`` (None means accuracy) for a task with these ``classes``.

    >>> parse_metric("macro_f1", ["cat", "dog"]).describe()
    'macro F1: mean F1 score over the classes (higher is better)'
    """
    spec = "accuracy" if spec is None else spec.strip()
    if spec in METRICS:
        return Metric(spec, len(classes))
    if spec.startswith(_COST) and spec[len(_COST):].strip():
        path = Path(spec[len(_COST):].strip()).expanduser().resolve()
        return Metric(f"{_COST}{path}", len(classes), _read_costs(path, list(classes)))
    raise ConfigError(
        f"unknown metric {spec!r}: use one of {', '.join(METRICS)}, or cost:FILE.csv "
        f"(a K x K CSV of misclassification costs, rows true class, columns predicted class)."
    )


def _confusion(t: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices (S, K, K) of the prediction vectors ``preds`` (S, N) against ``t``."""
    return _count(_codes(t, preds, k), len(preds), k)


def _codes(t: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """Cell s*K*K + t*K + p of the stacked confusion matrices, for each seed s and example."""
    return t * k + preds + (np.arange(len(preds)) * k * k)[:, None]


def _count(codes: np.ndarray, s: int, k: int) -> np.ndarray:
    return np.bincount(codes.ravel(), minlength=s * k * k).reshape(s, k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, and 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(np.shape(num)), where=den > 0)


def _read_costs(path: Path, classes: list[str]) -> np.ndarray:
    """The K x K cost matrix in ``path``, rows and columns in the order of ``classes``."""
    k, where = len(classes), f"cost matrix {path}"
    rows = _read_rows(path, where)
    # A labelled grid has K + 1 rows: a header of K labels, or of K + 1 whose top-left cell is
    # empty or text (e.g. "true/pred"), then K rows that each start with a label.
    labelled = len(rows) == k + 1 and (len(rows[0][1]) == k or not _is_number(rows[0][1][0]))
    if labelled:
        shape_ok = len(rows[0][1]) in (k, k + 1) and all(len(r) == k + 1 for _, r in rows[1:])
    else:
        shape_ok = len(rows) == k and all(len(r) == k for _, r in rows)
    if not shape_ok:
        widths = sorted({len(r) for _, r in rows}) or [0]
        cells = f"{widths[0]} to {widths[-1]}" if len(widths) > 1 else f"{widths[0]}"
        raise ConfigError(
            f"{where} has {len(rows)} rows of {cells} cells, but the {k} classes "
            f"({_names(classes)}) need {k} x {k} costs (row: true class, column: predicted "
            f"class), optionally with a header row and a first column of class labels; fix the file."
        )
    if not labelled:
        return _fill(where, rows, list(range(k)), list(range(k)), first_column=1)
    header_line, header = rows[0]
    cols = _order(where, f"the header (line {header_line})", header[-k:], classes)
    order = _order(where, "the first column", [r[0] for _, r in rows[1:]], classes)
    return _fill(where, rows[1:], order, cols, first_column=2)


def _read_rows(path: Path, where: str) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells) of each non-blank row of the CSV file."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((reader.line_num, [cell.strip() for cell in row]))
    except OSError as e:
        raise ConfigError(
            f"cannot read {where}: {e.strerror}; pass cost:FILE.csv with a readable CSV file."
        ) from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(
            f"cannot read {where} as a UTF-8 CSV file ({type(e).__name__}); "
            f"save it as plain comma-separated text."
        ) from None
    return rows


def _order(where: str, place: str, labels: list[str], classes: list[str]) -> list[int]:
    """The class index of each label: all class names, or all indices 0..K-1, each once."""
    k = len(classes)
    names = {name: i for i, name in enumerate(classes)}
    indices = {str(i): i for i in range(k)}
    for label in labels:
        if label not in names and label not in indices:
            raise ConfigError(
                f"{where}: label {label!r} in {place} is not a class; use the class names "
                f"({_names(classes)}) or the indices 0..{k - 1}."
            )
    index = names if all(label in names for label in labels) else indices
    if not all(label in index for label in labels):
        raise ConfigError(f"{where}: {place} mixes class names and indices; use one or the other.")
    for n, label in enumerate(labels):
        if label in labels[:n]:
            raise ConfigError(
                f"{where}: label {label!r} appears twice in {place}; name each of the {k} classes once."
            )
    return [index[label] for label in labels]


def _fill(
    where: str, rows: list[tuple[int, list[str]]], order: list[int], cols: list[int],
    first_column: int,
) -> np.ndarray:
    """The matrix with row ``rows[r]`` as class ``order[r]``, its cells from ``first_column`` on
    (1-based) as classes ``cols``."""
    k = len(order)
    matrix = np.zeros((k, k))
    for (line, row), i in zip(rows, order):
        for col, (cell, j) in enumerate(zip(row[first_column - 1:], cols), start=first_column):
            at = f"{where}: line {line}, column {col} is"
            if not _is_number(cell):
                raise ConfigError(f"{at} {cell!r}, not a finite number; every cost must be one.")
            if float(cell) < 0:
                raise ConfigError(f"{at} {cell}, a negative cost; costs must be >= 0.")
            matrix[i, j] = float(cell)
    if not matrix.any():
        raise ConfigError(
            f"{where}: every cost is 0, so all predictions would tie; put each mistake's cost in its cell."
        )
    return matrix


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _names(classes: list[str], shown: int = 6) -> str:
    names = ", ".join(classes[:shown])
    return names if len(classes) <= shown else f"{names}, ... ({len(classes)} in all)"
