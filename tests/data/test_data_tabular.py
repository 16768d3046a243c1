from __future__ import annotations

import shutil

import pytest
import torch

from samtune.data import load_data
from samtune.errors import DataError


def test_mixed_csv(mixed_csv):
    ds = load_data(mixed_csv)
    assert ds.kind == "tabular" and ds.classes == ["bird", "cat", "dog"]
    # age + score standardized, colour one-hot (3 values)
    assert ds.input_shape == (5,)
    assert ds.split_sizes() == {"train": 28, "val": 6, "test": 6}
    assert not ds.augment and not ds.flip
    num = ds.x_train[:, :2]
    assert torch.allclose(num.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(num.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    onehot = ds.x_train[:, 2:]
    assert set(onehot.unique().tolist()) == {0.0, 1.0}
    assert torch.all(onehot.sum(1) == 1)
    batch = ds.x_train[:4]
    assert ds.augment_batch(batch, torch.Generator().manual_seed(0)) is batch


def test_folder_with_one_csv(mixed_csv, tmp_path):
    folder = tmp_path / "tab"
    folder.mkdir()
    shutil.copy(mixed_csv, folder / "train.csv")
    (folder / "README.txt").write_text("about")
    ds = load_data(folder)
    assert ds.kind == "tabular" and ds.input_shape == (5,)


def test_folder_with_two_csvs(mixed_csv, tmp_path):
    folder = tmp_path / "tab"
    folder.mkdir()
    shutil.copy(mixed_csv, folder / "a.csv")
    shutil.copy(mixed_csv, folder / "b.csv")
    with pytest.raises(DataError, match="a.csv, b.csv"):
        load_data(folder)


def test_target_argument_and_integer_labels(csv_file):
    rows = [["f1", "f2", "outcome"]] + [[i % 11, i % 7, [2, 10, 1][i % 3]] for i in range(30)]
    ds = load_data(csv_file(rows), target="outcome")
    assert ds.classes == ["1", "2", "10"]  # numeric sort
    assert ds.input_shape == (2,)
    rows = [["f", "y"]] + [[i, f"{i % 3 * 5}.0"] for i in range(30)]
    assert load_data(csv_file(rows, "floats.csv")).classes == ["0", "5", "10"]


def test_semicolon_delimiter(csv_file, tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;class\n" + "".join(f"{i};{i * 2};{i % 2}\n" for i in range(20)))
    assert load_data(path).input_shape == (2,)


def test_missing_target_column_lists_columns(mixed_csv):
    with pytest.raises(DataError) as err:
        load_data(mixed_csv, target="nope")
    msg = str(err.value)
    assert "'nope'" in msg and "age, colour, score, label" in msg and str(mixed_csv) in msg


def test_no_label_column_says_pass_target(csv_file):
    path = csv_file([["a", "b"]] + [[1, 2]] * 10)
    with pytest.raises(DataError) as err:
        load_data(path)
    msg = str(err.value)
    assert "--target" in msg and "a, b" in msg and "\n" not in msg


def test_nonfinite_numeric(csv_file):
    rows = [["x", "label"]] + [[float(i), i % 2] for i in range(20)]
    rows[5][0] = "inf"
    with pytest.raises(DataError) as err:
        load_data(csv_file(rows))
    msg = str(err.value)
    assert "'x'" in msg and "'inf'" in msg and "line 6" in msg and "\n" not in msg


@pytest.mark.parametrize("gap", ["", "NA", "nan", "?", "null"])
def test_missing_numeric_values_get_the_training_median_and_an_indicator(csv_file, gap):
    rows = [["x", "z", "label"]] + [[float(i), float(i % 5), i % 2] for i in range(40)]
    for i in (3, 10, 17, 24, 31, 38):
        rows[i + 1][0] = gap
    with pytest.warns(UserWarning, match=r"6 missing value\(s\) in numeric column\(s\) 'x' \(6\)"):
        ds = load_data(csv_file(rows), seed=0)
    assert ds.input_shape == (3,)  # x, z and x's missing indicator (z has no gaps)
    x = torch.cat([ds.x_train, ds.x_val, ds.x_test])
    assert torch.isfinite(x).all()
    indicator = x[:, 2] > x[:, 2].mean()
    assert int(indicator.sum()) == 6
    # imputed cells hold the training median, standardized: one value, inside the observed range
    imputed = x[indicator, 0]
    assert torch.allclose(imputed, imputed[0].expand_as(imputed))
    train_x = ds.x_train[:, 0][ds.x_train[:, 2] <= x[:, 2].mean()]
    assert torch.isclose(imputed[0], train_x.median(), atol=0.1)


def test_missing_categories_form_one_category(csv_file):
    rows = [["colour", "label"]] + [[["red", "blue", "", "NA"][i % 4], i % 2] for i in range(40)]
    ds = load_data(csv_file(rows))
    assert ds.input_shape == (3,)  # red, blue, missing


def test_a_fractional_numeric_target_is_refused_as_regression(csv_file):
    rows = [["x", "target"]] + [[i, i / 7] for i in range(30)]
    with pytest.raises(DataError) as err:
        load_data(csv_file(rows))
    msg = str(err.value)
    assert "regression" in msg and "'target'" in msg and "--target" in msg and "\n" not in msg


def test_garbage_in_numeric_column(csv_file):
    rows = [["x", "label"]] + [[i, i % 2] for i in range(20)]
    rows[3][0] = "abc"
    with pytest.raises(DataError) as err:
        load_data(csv_file(rows))
    msg = str(err.value)
    assert "'x'" in msg and "'abc'" in msg and "line 4" in msg


def test_mostly_text_column_is_categorical(csv_file):
    rows = [["x", "label"]] + [[["a", "b", "3"][i % 3], i % 2] for i in range(20)]
    assert load_data(csv_file(rows)).input_shape == (3,)


def test_ragged_row(csv_file, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,label\n1,0\n2,1,9\n")
    with pytest.raises(DataError, match="line 3"):
        load_data(path)


def test_empty_csv(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("a,label\n")
    with pytest.raises(DataError, match="no data rows"):
        load_data(path)


def test_single_class_csv(csv_file):
    path = csv_file([["a", "label"]] + [[i, "same"] for i in range(10)])
    with pytest.raises(DataError, match="'same'.*at least 2 classes"):
        load_data(path)
