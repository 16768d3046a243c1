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
"""

from __future__ import annotations

import csv
import io
import math
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


def load_csv(path: Path, target: str | None) -> RawData:
    """Read a CSV file into :class:`RawData` (features as an object array, one column each)."""
    data = path.read_bytes()
    header, rows, lines = _read_rows(path, data)
    t = _pick_target(header, target, path)
    columns = list(zip(*rows, strict=True))
    feats = [i for i in range(len(header)) if i != t]
    if not feats:
        raise DataError(f"'{path}' has only the label column '{header[t]}'; add feature columns")
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
    return RawData(
        "tabular",
        {"train": x},
        {"train": y},
        hasher.hexdigest(),
        _fitter(numeric, categorical, impute=bool(gaps)),
        flip=False,
        target=header[t],
    )
