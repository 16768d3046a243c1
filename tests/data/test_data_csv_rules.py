"""CSV reading rules with their exact messages: header and row problems, dirty numbers, label
columns, row-identifier detection, the warnings, and a file with a byte-order mark."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from samtune.data import load_data
from samtune.data._tabular import id_like, load_csv
from samtune.errors import DataError


def _write(tmp_path, text, name="d.csv", bom=False):
    path = tmp_path / name
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def _rows(n=24, extra=""):
    return "".join(f"{i % 5 * 0.5},{i % 2}{extra}\n" for i in range(n))


@pytest.mark.parametrize("text, message", [
    ("a,a,label\n" + "1,2,0\n3,4,1\n" * 6, "'{p}' has duplicate column 'a'; give every column a unique name in the header"),
    ("b,b,a,a,label\n" + "1,2,3,4,0\n5,6,7,8,1\n" * 6, "'{p}' has duplicate column 'a'; give every column a unique name in the header"),
    ("a,,label\n" + "1,2,0\n3,4,1\n" * 6, "'{p}' has an unnamed column; give every column a unique name in the header"),
    ("a,label\n", "'{p}' has no data rows; give a header row and one row per example"),
    ("a,b\n1,2\n", "no label column in '{p}' (looked for label/target/class/y); columns: a, b; pass --target NAME"),
    ("a,label\n" + "1,0\n" * 5 + "x,1\n" + "2,1\n" * 40, "numeric column 'a' in '{p}' has the non-numeric value 'x' at line 7; clean that value or drop the row before loading"),
    ("a,label\n" + "1,0\n" * 5 + "inf,1\n", "numeric column 'a' in '{p}' has the non-finite value 'inf' at line 7; clean that value or drop the row before loading"),
    ("a,b,label\n" + "1,,0\n2,NA,1\n" * 6, "column 'b' in '{p}' is empty in every row; remove it"),
    ("a,label\n1,0\n2,\n3,1\n", "line 3 of '{p}' has no label in column 'label'; fill it or drop the row"),
    ("a,label\n1,0\n2,1.5\n3,1\n", "label column 'label' of '{p}' holds fractional numbers ('1.5' at line 3), a regression target; samtune tunes classifiers: pass --target with a column of class labels"),
])
def test_bad_csvs_and_their_messages(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_csv(path, None)
    assert str(err.value) == message.format(p=path)


def test_drop_errors_and_the_only_column(tmp_path):
    path = _write(tmp_path, "a,b,label\n" + "1,2,0\n3,4,1\n" * 6)
    with pytest.raises(DataError) as err:
        load_csv(path, None, drop=("zz",))
    assert str(err.value) == f"column 'zz' given to --drop is not in '{path}'; columns: a, b, label"
    with pytest.raises(DataError) as err:
        load_csv(path, None, drop=("label",))
    assert str(err.value) == (f"column 'label' given to --drop is the label column of '{path}'; "
                              "pass --target to use another column as the label")
    with pytest.raises(DataError) as err:
        load_csv(path, None, drop=("a", "b"))
    assert str(err.value) == f"'{path}' has only the label column 'label'; add feature columns"
    raw = load_csv(path, None, drop=("a",))
    assert raw.x["train"].shape == (12, 1)


def test_labels_int_or_strings_and_a_bom(tmp_path):
    raw = load_csv(_write(tmp_path, "a,label\n" + "1,1.0\n2,3\n" * 3, bom=True), None)
    assert raw.y["train"].dtype == np.int64 and raw.y["train"].tolist() == [1, 3] * 3
    assert raw.target == "label"  # the byte-order mark is not part of the first name
    raw = load_csv(_write(tmp_path, "a;label\n" + "1;cat\n2;dog\n" * 3, name="s.csv"), None)
    assert raw.y["train"].dtype.kind == "U" and raw.y["train"].tolist() == ["cat", "dog"] * 3
    assert raw.x["train"].shape == (6, 1)  # ';' sniffed as the delimiter
    raw = load_csv(_write(tmp_path, "a|b|y\n" + "1|x|0\n2|y|1\n" * 3, name="p.csv"), None)
    assert raw.x["train"].shape == (6, 2) and raw.target == "y"


def test_a_mostly_text_column_is_categorical_with_its_gaps_as_one_category(tmp_path):
    cells = ["red", "blue", "", "3", "green"] * 5
    text = "c,label\n" + "".join(f"{c},{i % 2}\n" for i, c in enumerate(cells))
    raw = load_csv(_write(tmp_path, text), None)
    col = raw.x["train"][:, 0]
    assert col.dtype == object and sorted(set(col)) == ["", "3", "blue", "green", "red"]
    out = raw.fit(raw.x["train"])(raw.x["train"])
    assert out.shape == (25, 5) and out.dtype == np.float32 and set(out.sum(1)) == {1.0}
    assert raw.fit(raw.x["train"])(raw.x["train"][:0]).shape == (0, 5)
    assert raw.fit(raw.x["train"])(np.array([["purple"]], dtype=object)).tolist() == [[0.0] * 5]


def test_a_numeric_column_with_up_to_ten_percent_text_is_numeric(tmp_path):
    cells = [str(i) for i in range(18)] + ["x", "y"]  # 90% numbers: numeric, so 'x' is an error
    text = "a,label\n" + "".join(f"{c},{i % 2}\n" for i, c in enumerate(cells))
    with pytest.raises(DataError, match="non-numeric value 'x' at line 20"):
        load_csv(_write(tmp_path, text), None)
    cells[17] = "z"  # 85%: categorical
    text = "a,label\n" + "".join(f"{c},{i % 2}\n" for i, c in enumerate(cells))
    assert load_csv(_write(tmp_path, text), None).x["train"][:, 0].dtype == object


@pytest.mark.parametrize("values, why", [
    ([f"P{i:03d}" for i in range(20)], "unique per row"),
    ([f"P{i:03d}" for i in range(19)], None),                      # too few rows to tell
    ([f"P{i:03d}" for i in range(19)] + ["NA"], None),             # a gap: not an identifier
    ([f"P{i:03d}" for i in range(19)] + ["P000"], None),           # a repeat
    ([str(i) for i in range(20)], "increases with the row order"),
    ([str(2 * i + 5) for i in range(20)], "increases with the row order"),
    ([str(100 - i) for i in range(20)], "decreases with the row order"),
    ([str((7 * i) % 20) for i in range(20)], "numbers the rows"),
    ([str((7 * i) % 20 + 3) for i in range(20)], "numbers the rows"),
    ([str((7 * i) % 21) for i in range(20)], None),                # a gap in the numbering
    ([f"{i}.5" for i in range(20)], None),                          # decimals: a measurement
    ([f"{i}.5" for i in range(18)] + ["a1", "b2"], None),          # 90% numeric
    ([f"{i}.5" for i in range(17)] + ["a1", "b2", "c3"], "unique per row"),
])
def test_id_like(values, why):
    assert id_like(values) == why


def test_id_columns_are_left_out_with_a_warning_and_change_the_fingerprint(tmp_path):
    body = "".join(f"{i},{i % 4 * 0.5},{i % 2}\n" for i in range(30))
    path = _write(tmp_path, "id,a,label\n" + body)
    with pytest.warns(UserWarning) as rec:
        raw = load_csv(path, None)
    assert str(rec[0].message) == (
        f"'{path}': column(s) 'id' (increases with the row order) look like row identifiers; "
        "they are left out as features (a label leak when the file is sorted by class); "
        "pass --drop COL[,COL] to choose the columns to leave out")
    assert raw.x["train"].shape == (30, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # named with --drop: no warning
        plain = load_csv(path, None, drop=("id",))
    assert plain.x["train"].shape == (30, 1)
    only = _write(tmp_path, "id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(30)), name="o.csv")
    with pytest.warns(UserWarning, match="they are the only features, so they are kept; pass --drop"):
        assert load_csv(only, None).x["train"].shape == (30, 1)


def test_left_out_columns_enter_the_fingerprint(tmp_path):
    body = "".join(f"{i % 3},{i % 4 * 0.5},{i % 2}\n" for i in range(30))
    path = _write(tmp_path, "a,b,label\n" + body)
    full, drop_a, drop_b = (load_csv(path, None).content_hash,
                            load_csv(path, None, drop=("a",)).content_hash,
                            load_csv(path, None, drop=("b",)).content_hash)
    assert len({full, drop_a, drop_b}) == 3


def test_the_gap_warning_counts_per_column(tmp_path):
    text = "a,b,label\n" + "".join(
        f"{'' if i in (1, 5) else i % 4},{'?' if i == 3 else i % 3},{i % 2}\n" for i in range(30))
    path = _write(tmp_path, text)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = load_data(path)
    messages = [str(w.message) for w in rec]
    assert (f"'{path}': 3 missing value(s) in numeric column(s) 'a' (2), 'b' (1) are imputed "
            "with the training split's median, plus a missing-indicator feature each") in messages
    # a, b, and an indicator for each column with a gap in the training split
    assert ds.input_shape[0] in (3, 4) and torch.isfinite(ds.x_train).all()


def test_blank_lines_anywhere_are_skipped(tmp_path):
    text = "\na,label\n1,0\n2,1\n\n ,  \n3,0\n4,1\n\n"
    raw = load_csv(_write(tmp_path, text), None)
    assert raw.x["train"][:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_nan_written_gaps_do_not_make_a_text_column_numeric(tmp_path):
    cells = ["red", "blue"] + ["nan"] * 18  # 2 present cells, both text: categorical
    text = "c,label\n" + "".join(f"{c},{i % 2}\n" for i, c in enumerate(cells))
    raw = load_csv(_write(tmp_path, text), None)
    assert raw.x["train"][:, 0].dtype == object
    out = raw.fit(raw.x["train"])
    assert out(raw.x["train"][:0]).dtype == np.float32 and out(raw.x["train"][:0]).shape == (0, 3)


def test_interleaved_numbers_number_the_rows_but_do_not_increase():
    values = [str(v) for pair in ((2 * i + 1, 2 * i) for i in range(10)) for v in pair]
    assert id_like(values) == "numbers the rows"


def test_several_id_columns_are_named_and_the_real_feature_is_kept(tmp_path):
    body = "".join(f"{i},P{i:03d},{(i * 7) % 5 * 0.5},{i % 2}\n" for i in range(30))
    path = _write(tmp_path, "id,code,a,label\n" + body)
    with pytest.warns(UserWarning) as rec:
        raw = load_csv(path, None)
    assert str(rec[0].message).startswith(
        f"'{path}': column(s) 'id' (increases with the row order), 'code' (unique per row) look like "
        "row identifiers; they are left out as features")
    assert raw.x["train"][:, 0].tolist() == [(i * 7) % 5 * 0.5 for i in range(30)]


def test_a_file_read_whole_is_fingerprinted_by_its_bytes_alone(tmp_path):
    from samtune.data._fingerprint import ContentHasher

    path = _write(tmp_path, "a,b,label\n" + "".join(f"{i % 3},{i % 4},{i % 2}\n" for i in range(30)))
    h = ContentHasher()
    h.add_file(path.name, path.read_bytes())
    assert load_csv(path, None).content_hash == h.hexdigest()
    assert load_csv(path, None, drop=("a",)).content_hash != h.hexdigest()
