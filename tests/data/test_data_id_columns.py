"""ID-like CSV columns are left out with a warning naming them; --drop leaves out others."""

from __future__ import annotations

import numpy as np
import pytest

from samtune.cli import main
from samtune.data import load_data
from samtune.data._tabular import id_like
from samtune.errors import DataError
from samtune.search import SearchOptions


def _rows(n: int = 60, shuffle: bool = False) -> list[list]:
    """Sorted by class: 'id' counts up, so it predicts the label; 'x' and 'kind' are features."""
    rng = np.random.default_rng(0)
    rows = [[i, f"P{1000 + 7 * i}", round(float(rng.normal()), 3), ["a", "b"][i % 2], i * 3 // n]
            for i in range(n)]
    if shuffle:
        rows = [rows[i] for i in rng.permutation(n)]
    return [["id", "patient_id", "x", "kind", "label"], *rows]


def test_text_and_integer_identifiers_are_left_out_with_a_warning_naming_them(csv_file):
    with pytest.warns(UserWarning) as record:
        ds = load_data(csv_file(_rows()))
    text = " ".join(str(w.message) for w in record)
    assert "'id' (increases with the row order)" in text and "'patient_id' (unique per row)" in text
    assert "left out" in text and "--drop" in text
    assert ds.input_shape == (3,)  # x, and kind one-hot (a, b): no id, no 60 patient columns


def test_shuffled_row_numbers_are_identifiers_too(csv_file):
    with pytest.warns(UserWarning, match=r"'id' \(numbers the rows\)"):
        ds = load_data(csv_file(_rows(shuffle=True)))
    assert ds.input_shape == (3,)


@pytest.mark.parametrize("values, why", [
    ([str(i % 7) for i in range(30)], None),  # repeats: a feature
    ([f"{i / 3:.4f}" for i in range(30)], None),  # fractional numbers: a measurement
    ([str(i) for i in range(10)], None),  # too few rows to tell
    ([str(100 - 3 * i) for i in range(30)], "decreases with the row order"),
    ([f"user-{i}" for i in range(30)], "unique per row"),
])
def test_id_like(values, why):
    assert id_like(values) == why


def test_drop_leaves_out_named_columns_and_changes_the_fingerprint(csv_file):
    rows = [["a", "b", "c", "label"]] + [[i % 5, i % 3, i % 4, i % 2] for i in range(40)]
    path = csv_file(rows)
    full = load_data(path)
    dropped = load_data(path, drop=["b", "c"])
    assert full.input_shape == (3,) and dropped.input_shape == (1,)
    assert load_data(path, drop=["b"]).fingerprint != load_data(path, drop=["c"]).fingerprint
    assert load_data(path, drop=()).fingerprint == full.fingerprint


@pytest.mark.parametrize("drop, needle", [(["nope"], "'nope' given to --drop is not in"),
                                          (["label"], "is the label column")])
def test_drop_of_an_unknown_or_label_column_is_one_line(csv_file, drop, needle):
    rows = [["a", "label"]] + [[i % 5, i % 2] for i in range(40)]
    with pytest.raises(DataError, match=needle) as err:
        load_data(csv_file(rows), drop=drop)
    assert "\n" not in str(err.value)


def test_drop_is_a_search_option_and_a_cli_flag(csv_file, capsys):
    assert SearchOptions(drop="a, b").drop == ("a", "b")
    assert SearchOptions(drop=["a"]).drop == ("a",)
    rows = [["a", "label"]] + [[i % 5, i % 2] for i in range(40)]
    assert main(["search", "--data", str(csv_file(rows)), "--drop", "zzz", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "'zzz'" in err and "\n" not in err
