from __future__ import annotations

import pytest
import torch
from PIL import Image

from samtune.data import load_data
from samtune.errors import DataError


def _check_normalized(x: torch.Tensor) -> None:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-4)


def test_class_folders_png(image_folder):
    root = image_folder({"cat": 10, "dog": 10}, size=(12, 10))
    ds = load_data(root)
    assert ds.kind == "image" and ds.classes == ["cat", "dog"]
    # no image_size: median of min(h, w) = 10
    assert ds.input_shape == (3, 10, 10)
    assert ds.split_sizes() == {"train": 14, "val": 3, "test": 3}
    assert ds.augment and ds.flip and ds.skipped_files == []
    assert ds.source == str(root)
    _check_normalized(ds.x_train)
    assert set(ds.y_train.tolist()) == {0, 1}


def test_jpeg_grayscale_gives_one_channel(image_folder):
    root = image_folder({"a": 6, "b": 6}, mode="L", ext=".jpg", size=(20, 20))
    ds = load_data(root, image_size=16)
    assert ds.input_shape == (1, 16, 16)
    _check_normalized(ds.x_train)


def test_mixed_gray_and_rgb_gives_rgb(image_folder):
    root = image_folder({"a": 4, "b": 4}, mode="L")
    image_folder({"a": 1}, mode="RGB", ext=".bmp", root=root)
    assert load_data(root).input_shape[0] == 3


def test_resize_median_is_clamped(image_folder):
    small = image_folder({"a": 4, "b": 4}, size=(4, 5))
    assert load_data(small).input_shape == (3, 8, 8)
    big = image_folder({"a": 4, "b": 4}, size=(100, 90), root=small.parent / "big")
    assert load_data(big).input_shape == (3, 64, 64)


def test_train_val_test_layout(image_folder):
    root = image_folder({"x": 6, "y": 6}, sub="train")
    image_folder({"x": 2, "y": 2}, sub="val", root=root)
    image_folder({"x": 3, "y": 1}, sub="test", root=root)
    ds = load_data(root)
    assert ds.split_sizes() == {"train": 12, "val": 4, "test": 4}
    assert ds.y_test.tolist() == [0, 0, 0, 1]
    _check_normalized(ds.x_train)


def test_train_and_test_only_carves_val(image_folder):
    root = image_folder({"x": 10, "y": 10}, sub="train")
    image_folder({"x": 2, "y": 2}, sub="test", root=root)
    ds = load_data(root, val_fraction=0.2)
    assert ds.split_sizes() == {"train": 16, "val": 4, "test": 4}


def test_ignores_hidden_and_unsupported_files(image_folder):
    root = image_folder({"a": 4, "b": 4})
    (root / "a" / "notes.txt").write_text("hello")
    (root / "a" / ".DS_Store").write_bytes(b"\0\1")
    (root / ".hidden").mkdir()
    (root / "README.md").write_text("x")
    ds = load_data(root)
    assert ds.classes == ["a", "b"] and sum(ds.split_sizes().values()) == 8


def test_corrupt_file_skipped_with_warning(image_folder):
    root = image_folder({"a": 4, "b": 4})
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.warns(UserWarning, match="broken.png"):
        ds = load_data(root)
    assert ds.skipped_files == [str(bad)]
    assert sum(ds.split_sizes().values()) == 8


def test_too_few_readable_images_in_class(image_folder):
    root = image_folder({"a": 4, "b": 1})
    (root / "b" / "bad.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(DataError) as err:
        load_data(root)
    msg = str(err.value)
    assert str(root / "b") in msg and "1 readable" in msg and "\n" not in msg


def test_no_images_lists_extensions(tmp_path):
    root = tmp_path / "empty"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_data(root)
    msg = str(err.value)
    assert str(root) in msg and ".png" in msg and ".webp" in msg and "\n" not in msg


def test_flat_folder_of_images_says_use_subfolders(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(root / f"img{i}.png")
    with pytest.raises(DataError, match="subfolder") as err:
        load_data(root)
    assert str(root) in str(err.value)


def test_split_layout_with_stray_folder(image_folder):
    root = image_folder({"x": 4, "y": 4}, sub="train")
    image_folder({"x": 2}, sub="extra", root=root)
    with pytest.raises(DataError, match="extra"):
        load_data(root)


def test_class_only_in_test_is_an_error(image_folder):
    root = image_folder({"x": 6, "y": 6}, sub="train")
    image_folder({"z": 2}, sub="test", root=root)
    with pytest.raises(DataError, match="'z'.*test"):
        load_data(root)


def test_single_class_is_an_error(image_folder):
    root = image_folder({"only": 6})
    with pytest.raises(DataError, match="at least 2 classes") as err:
        load_data(root)
    assert str(root) in str(err.value)


def test_class_too_small_to_split(image_folder):
    root = image_folder({"big": 10, "tiny": 2})
    with pytest.raises(DataError) as err:
        load_data(root)
    msg = str(err.value)
    assert "'tiny'" in msg and "2 example" in msg and "at least 3" in msg
    # with only val carved, 2 per class is enough
    ds = load_data(root, test_fraction=0)
    assert ds.split_sizes()["test"] == 0 and ds.x_test.shape == (0, 3, 10, 10)
