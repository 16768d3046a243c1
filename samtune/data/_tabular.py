"""CSV files: one row per example, a header row, one target column.

Target: the ``target`` argument, else the first column named (any case)
``label``, ``target``, ``class`` or ``y``. A feature column where every
non-empty value parses as a number is numeric: empty, NaN or inf cells are
errors (samtune does not impute). A column where at least 90% of the non-empty
values are numbers but some are not is treated as dirty numeric data (error).
Every other column is categorical and one-hot encoded. Numeric columns are
standardized; both transforms are a ``ColumnTransformer`` fitted on the train
split only. Whole-number labels (``3``, ``3.0``) sort numerically, others as strings.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from samtune.data._fingerprint import ContentHasher
from samtune.data._raw import Fitter, RawData
from samtune.errors import DataError

TARGET_NAMES = ("label", "target", "class", "y")
NUMERIC_SHARE = 0.9


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
    """Return a float column, or a string column when categorical; raise on dirty numbers."""
    nums = [_number(v) for v in values]
    filled = [v for v in values if v != ""]
    if not filled:
        raise DataError(f"column '{name}' in '{path}' is empty in every row; remove it")
    share = sum(n is not None for n in nums) / len(filled)
    if share < NUMERIC_SHARE:
        return np.asarray(values, dtype=object)
    for value, num, line in zip(values, nums, lines, strict=True):
        if num is not None and math.isfinite(num):
            continue
        if value == "":
            problem = "an empty value (missing values are not imputed)"
        elif num is None:
            problem = f"the non-numeric value '{value}'"
        else:
            problem = f"the non-finite value '{value}'"
        raise DataError(
            f"numeric column '{name}' in '{path}' has {problem} at line {line}; "
            "clean that value or drop the row before loading"
        )
    return np.asarray(nums, dtype=np.float64)


def _labels(values: list[str], lines: list[int], name: str, path: Path) -> np.ndarray:
    for value, line in zip(values, lines, strict=True):
        if value == "":
            raise DataError(
                f"line {line} of '{path}' has no label in column '{name}'; fill it or drop the row"
            )
    nums = [_number(v) for v in values]
    if all(n is not None and math.isfinite(n) and n == int(n) for n in nums):
        return np.asarray([int(n) for n in nums], dtype=np.int64)  # "1", "1.0" -> 1
    return np.asarray(values, dtype=str)


def _fitter(numeric: list[int], categorical: list[int]) -> Fitter:
    def fit(x_train: np.ndarray):
        parts = []
        if numeric:
            parts.append(("num", StandardScaler(), numeric))
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
    hasher = ContentHasher()
    hasher.add_file(path.name, data)
    return RawData(
        "tabular",
        {"train": x},
        {"train": y},
        hasher.hexdigest(),
        _fitter(numeric, categorical),
        flip=False,
        target=header[t],
    )
