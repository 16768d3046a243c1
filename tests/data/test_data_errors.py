from __future__ import annotations

import pytest

from samtune.data import load_data
from samtune.errors import DataError, SamtuneError


def test_missing_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as err:
        load_data(missing)
    msg = str(err.value)
    assert msg.startswith(f"data path '{missing}' does not exist;") and "\n" not in msg
    assert isinstance(err.value, SamtuneError)


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_text("x")
    with pytest.raises(DataError) as err:
        load_data(path)
    assert str(err.value) == (
        f"unsupported file type '.xyz' for '{path}'; use an image folder, .csv or .npz"
    )


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("a,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        load_data(path)


def test_target_with_non_csv_warns():
    with pytest.warns(UserWarning, match="not a CSV"):
        load_data("builtin:wine", target="label")
