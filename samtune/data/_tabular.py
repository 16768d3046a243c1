"""CSV files: one row per example, a header row, one target column.

Target: the ``target`` argument, else the first column named (any case)
``label``, ``target``, ``class`` or ``y``. A feature column where every
present value parses as a number is numeric. Missing cells (empty, ``NA``,
``NaN``, ``N/A``, ``null``, ``None``, ``?``, any case) in a numeric column are
imputed with the training split's median, and each such column gets a 0/1
missing-indicator feature (a warning names the columns); inf is an error. A
column where at least 90% of the present values are numbers but some are not is
treated as dirty numeric data (error). Every other column is categorical and
one-hot encoded, its missing cells forming one category of their own. Numeric
columns are standardized; every transform is fitted on the train split only.
Whole-number labels (``3``, ``3.0``) sort numerically, others as strings; numeric
labels with fractions (a regression target) are an error.

Columns named in ``drop`` are left out. So are columns that look like row identifiers, with a
warning naming them: a text column unique per row (one-hot encoding it gives one useless input
per row), and a column of whole numbers that strictly increases or decreases with the row order
or numbers the rows (unique and consecutive): in a file sorted by class such an ``id`` is a
label leak. Both need at least ``ID_MIN_ROWS`` rows; when they are the only features they are
kept (with the warning).
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from samtune.data._fingerprint import ContentHasher
from samtune.data._raw import Fitter, RawData
from samtune.errors import DataError

TARGET_NAMES = ("label", "target", "class", "y")
NUMERIC_SHARE = 0.9
MISSING = frozenset({"", "na", "nan", "n/a", "null", "none", "?"})  # compared in lower case
ID_MIN_ROWS = 20  # fewer rows: a column unique per row is no sign of an identifier
_WHOLE = re.compile(r"[+-]?\d+")  # a cell written as a whole number ("7", not "7.0")


def _read_rows(path: Path, data: bytes) -> tuple[list[str], list[list[str]], list[int]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"'{path}' is not UTF-8 text; re-save the CSV as UTF-8") from None
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows, lines = [], []
    header: list[str] | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        row = [cell.strip() for cell in row]
        if header is None:
            header = row
            continue
        if len(row) != len(header):
            raise DataError(
                f"line {reader.line_num} of '{path}' has {len(row)} fields but the header has "
                f"{len(header)}; fix that row"
            )
        rows.append(row)
        lines.append(reader.line_num)
    if header is None or not rows:
        raise DataError(f"'{path}' has no data rows; give a header row and one row per example")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes or "" in header:
        bad = f"duplicate column '{dupes[0]}'" if dupes else "an unnamed column"
        raise DataError(f"'{path}' has {bad}; give every column a unique name in the header")
    return header, rows, lines


def _pick_target(header: list[str], target: str | None, path: Path) -> int:
    cols = ", ".join(header)
    if target is not None:
        if target not in header:
            raise DataError(f"target column '{target}' is not in '{path}'; columns: {cols}")
        return header.index(target)
    for i, name in enumerate(header):
        if name.lower() in TARGET_NAMES:
            return i
    raise DataError(
        f"no label column in '{path}' (looked for label/target/class/y); columns: {cols}; "
        "pass --target NAME"
    )


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _column(name: str, values: list[str], lines: list[int], path: Path) -> np.ndarray:
    """Return a float column (NaN where missing), or a string column when categorical (missing
    cells as ""); raise on dirty numbers."""
    missing = [v.lower() in MISSING for v in values]
    present = [v for v, gone in zip(values, missing) if not gone]
    if not present:
        raise DataError(f"column '{name}' in '{path}' is empty in every row; remove it")
    nums = [None if gone else _number(v) for v, gone in zip(values, missing)]
    share = sum(n is not None for n in nums) / len(present)
    if share < NUMERIC_SHARE:
        return np.asarray(["" if gone else v for v, gone in zip(values, missing)], dtype=object)
    for value, num, gone, line in zip(values, nums, missing, lines, strict=True):
        if gone or (num is not None and math.isfinite(num)):
            continue
        problem = f"the non-numeric value '{value}'" if num is None else f"the non-finite value '{value}'"
        raise DataError(
            f"numeric column '{name}' in '{path}' has {problem} at line {line}; "
            "clean that value or drop the row before loading"
        )
    return np.asarray([math.nan if n is None else n for n in nums], dtype=np.float64)


def _labels(values: list[str], lines: list[int], name: str, path: Path) -> np.ndarray:
    for value, line in zip(values, lines, strict=True):
        if value == "":
            raise DataError(
                f"line {line} of '{path}' has no label in column '{name}'; fill it or drop the row"
            )
    nums = [_number(v) for v in values]
    if all(n is not None and math.isfinite(n) and n == int(n) for n in nums):
        return np.asarray([int(n) for n in nums], dtype=np.int64)  # "1", "1.0" -> 1
    if all(n is not None and math.isfinite(n) for n in nums):
        line, value = next((ln, v) for ln, v, n in zip(lines, values, nums) if n != int(n))
        raise DataError(
            f"label column '{name}' of '{path}' holds fractional numbers ('{value}' at line "
            f"{line}), a regression target; samtune tunes classifiers: pass --target with a "
            "column of class labels"
        )
    return np.asarray(values, dtype=str)


def _fitter(numeric: list[int], categorical: list[int], impute: bool) -> Fitter:
    def fit(x_train: np.ndarray):
        parts = []
        if numeric:
            scale = make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                StandardScaler(),
            ) if impute else StandardScaler()
            parts.append(("num", scale, numeric))
        if categorical:
            onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            parts.append(("cat", onehot, categorical))
        ct = ColumnTransformer(parts, sparse_threshold=0.0).fit(x_train)
        width = ct.transform(x_train[:1]).shape[1]

        def apply(x: np.ndarray) -> np.ndarray:
            if len(x) == 0:
                return np.zeros((0, width), dtype=np.float32)
            return np.asarray(ct.transform(x), dtype=np.float32)

        return apply

    return fit


def id_like(values: list[str]) -> str | None:
    """Why a column of raw cells looks like a row identifier, or None.

    >>> id_like([f"P{i:03d}" for i in range(30)])
    'unique per row'
    >>> id_like([str(i) for i in range(30)])
    'increases with the row order'
    >>> id_like([str(i % 7) for i in range(30)]) is None
    True
    """
    n = len(values)
    if n < ID_MIN_ROWS or any(v.lower() in MISSING for v in values) or len(set(values)) < n:
        return None
    if not all(_WHOLE.fullmatch(v) for v in values):
        numeric = sum(_number(v) is not None for v in values) / n
        return None if numeric >= NUMERIC_SHARE else "unique per row"
    nums = [int(v) for v in values]
    steps = [b - a for a, b in zip(nums, nums[1:])]
    if all(s > 0 for s in steps):
        return "increases with the row order"
    if all(s < 0 for s in steps):
        return "decreases with the row order"
    if max(nums) - min(nums) == n - 1:
        return "numbers the rows"
    return None


def _features(header: list[str], columns: list[tuple[str, ...]], t: int, drop: tuple[str, ...],
              path: Path) -> list[int]:
    """Indices of the feature columns: all but the target, ``drop`` and row identifiers."""
    for name in drop:
        if name not in header:
            raise DataError(f"column '{name}' given to --drop is not in '{path}'; columns: {', '.join(header)}")
        if name == header[t]:
            raise DataError(f"column '{name}' given to --drop is the label column of '{path}'; "
                            "pass --target to use another column as the label")
    feats = [i for i in range(len(header)) if i != t and header[i] not in drop]
    if not feats:
        raise DataError(f"'{path}' has only the label column '{header[t]}'; add feature columns")
    ids = {i: why for i in feats if (why := id_like(list(columns[i])))}
    if ids:
        shown = ", ".join(f"'{header[i]}' ({why})" for i, why in ids.items())
        kept = len(ids) == len(feats)
        warnings.warn(
            f"'{path}': column(s) {shown} look like row identifiers; "
            + ("they are the only features, so they are kept" if kept else "they are left out as "
               "features (a label leak when the file is sorted by class)")
            + "; pass --drop COL[,COL] to choose the columns to leave out",
            stacklevel=5,  # _features < load_csv < _read < load_data < the caller
        )
        if not kept:
            feats = [i for i in feats if i not in ids]
    return feats


def load_csv(path: Path, target: str | None, drop: tuple[str, ...] = ()) -> RawData:
    """Read a CSV file into :class:`RawData` (features as an object array, one column each)."""
    data = path.read_bytes()
    header, rows, lines = _read_rows(path, data)
    t = _pick_target(header, target, path)
    columns = list(zip(*rows, strict=True))
    feats = _features(header, columns, t, tuple(drop), path)
    cols = [_column(header[i], list(columns[i]), lines, path) for i in feats]
    x = np.empty((len(rows), len(cols)), dtype=object)
    for j, col in enumerate(cols):
        x[:, j] = col
    numeric = [j for j, c in enumerate(cols) if c.dtype != object]
    categorical = [j for j, c in enumerate(cols) if c.dtype == object]
    y = _labels(list(columns[t]), lines, header[t], path)
    gaps = {header[feats[j]]: n for j in numeric if (n := int(np.isnan(cols[j]).sum()))}
    if gaps:
        shown = ", ".join(f"'{name}' ({n})" for name, n in gaps.items())
        warnings.warn(
            f"'{path}': {sum(gaps.values())} missing value(s) in numeric column(s) {shown} are "
            "imputed with the training split's median, plus a missing-indicator feature each",
            stacklevel=4,  # load_csv < _read < load_data < the caller
        )
    hasher = ContentHasher()
    hasher.add_file(path.name, data)
    left_out = [h for i, h in enumerate(header) if i != t and i not in feats]
    if left_out:  # the same file read with other columns is other data
        hasher.add_file("left-out-columns", "\n".join(left_out).encode("utf-8"))
    return RawData(
        "tabular",
        {"train": x},
        {"train": y},
        hasher.hexdigest(),
        _fitter(numeric, categorical, impute=bool(gaps)),
        flip=False,
        target=header[t],
    )
