from __future__ import annotations

import torch

from samtune.data import Dataset, load_data


def _image_dataset(x: torch.Tensor, flip: bool, augment: bool = True) -> Dataset:
    y = torch.zeros(len(x), dtype=torch.int64)
    return Dataset(
        "mem",
        "image",
        x,
        y,
        x[:0],
        y[:0],
        x[:0],
        y[:0],
        ["a"],
        tuple(x.shape[1:]),
        "0" * 64,
        augment=augment,
        flip=flip,
    )


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``img`` moved by (dy, dx) with zeros filling in (what a zero-pad crop gives)."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = img[..., ys, xs]
    return out


def _matches(out: torch.Tensor, img: torch.Tensor, pad: int) -> set[str]:
    found = set()
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            if torch.equal(out, _shifted(img, dy, dx)):
                found.add("plain")
            if torch.equal(out, _shifted(img.flip(-1), dy, dx)):
                found.add("mirrored")
    return found


def _asymmetric(n: int) -> torch.Tensor:
    # strictly positive and asymmetric: neither mirror nor shift can hide each other
    return (torch.arange(n * 2 * 16 * 16, dtype=torch.float32) + 1).reshape(n, 2, 16, 16)


def test_deterministic_and_shape():
    ds = _image_dataset(_asymmetric(32), flip=True)
    a = ds.augment_batch(ds.x_train, torch.Generator().manual_seed(5))
    b = ds.augment_batch(ds.x_train, torch.Generator().manual_seed(5))
    c = ds.augment_batch(ds.x_train, torch.Generator().manual_seed(6))
    assert a.shape == ds.x_train.shape and a.dtype == ds.x_train.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_outputs_are_zero_padded_crops_and_flip_off_never_mirrors():
    x = _asymmetric(40)
    out = _image_dataset(x, flip=False).augment_batch(x, torch.Generator().manual_seed(0))
    for o, img in zip(out, x, strict=True):
        assert _matches(o, img, pad=2) == {"plain"}


def test_flip_on_mirrors_some():
    x = _asymmetric(40)
    out = _image_dataset(x, flip=True).augment_batch(x, torch.Generator().manual_seed(0))
    kinds = [_matches(o, img, pad=2) for o, img in zip(out, x, strict=True)]
    assert all(len(k) == 1 for k in kinds)
    assert 5 < sum(k == {"mirrored"} for k in kinds) < 35


def test_no_augment_and_tabular_unchanged():
    x = _asymmetric(4)
    assert _image_dataset(x, flip=True, augment=False).augment_batch(x) is x
    wine = load_data("builtin:wine")
    assert wine.augment_batch(wine.x_train) is wine.x_train


def test_small_images_and_digits():
    ds = load_data("builtin:digits")
    out = ds.augment_batch(ds.x_train[:64], torch.Generator().manual_seed(1))
    assert out.shape == (64, 1, 8, 8)
    assert not torch.equal(out, ds.x_train[:64])
