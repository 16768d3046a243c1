"""Image folders: ``ROOT/CLASS/*.png`` or ``ROOT/{train,val,test}/CLASS/*.png``.

* Formats: png, jpg/jpeg, bmp, webp, gif (first frame), tif/tiff. Other files
  and hidden files/folders are ignored; class folders are searched recursively.
* Colour: images become 1-channel ("L") when every image is grayscale, else RGB
  (alpha is dropped). 16-bit grayscale is scaled to 8 bits.
* Resize policy: with ``image_size`` every image is resized to
  ``image_size x image_size``; otherwise to ``S x S`` where ``S`` is the median
  of ``min(height, width)`` over the training images, clamped to [8, 64].
  Resizing is PIL bilinear and does not keep the aspect ratio.
* Corrupt files: a file with a supported extension that PIL cannot decode is
  skipped with a warning naming it and listed in ``Dataset.skipped_files``; a
  training class left with fewer than 2 readable images is an error.
* Memory: every file is decoded twice (probe, then resize) and the resized
  images are all held in memory; fine for the small data sets samtune targets.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from samtune.data._fingerprint import ContentHasher
from samtune.data._prep import fit_channel_norm
from samtune.data._raw import RawData
from samtune.errors import DataError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
MIN_SIDE, MAX_SIDE = 8, 64


class _Image(NamedTuple):
    split: str
    cls: str
    path: Path
    gray: bool = False
    side: int = 0


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name != "__MACOSX"


def _is_image(path: Path, top: Path) -> bool:
    rel = path.relative_to(top).parts
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS
        and path.is_file()
        and all(not p.startswith(".") and p != "__MACOSX" for p in rel)
    )


def has_images(root: Path) -> bool:
    """Whether any supported image lies in a (visible) subfolder of ``root``."""
    return any(
        _is_image(f, root)
        for d in root.iterdir()
        if d.is_dir() and _visible(d)
        for f in d.rglob("*")
    )


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and _visible(d))


def _layout(root: Path) -> dict[str, Path]:
    """Map split names to folders: the train/val/test layout, or just ``{"train": root}``."""
    dirs = {d.name.lower(): d for d in _subdirs(root)}
    if "train" not in dirs:
        return {"train": root}
    splits = {s: dirs[n] for s, names in SPLIT_DIRS.items() for n in names if n in dirs}
    known = {n for names in SPLIT_DIRS.values() for n in names}
    extra = sorted(n for n in dirs if n not in known)
    if extra:
        raise DataError(
            f"'{root}' has a train/ folder and also '{extra[0]}/'; in the split layout only "
            "train/, val/ and test/ may hold class folders; move it inside train/"
        )
    return splits


def _probe(data: bytes) -> tuple[bool, int]:
    """Fully decode once; return (is grayscale, shorter side)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.mode in GRAY_MODES, min(img.size)


def _decode(path: Path, mode: str, size: int) -> np.ndarray:
    """Decode, fix orientation, convert to ``mode`` and resize; return ``(C, size, size)`` uint8."""
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:  # the file changed since it was probed
        raise DataError(f"cannot decode image '{path}' ({type(exc).__name__}); remove it") from None
    with img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            arr = np.asarray(img, dtype=np.float32)
            arr = arr / 257.0 if arr.max() > 255 else arr
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _no_images(root: Path) -> DataError:
    exts = ", ".join(IMAGE_EXTENSIONS)
    if any(_is_image(f, root) for f in root.iterdir()):
        return DataError(
            f"'{root}' holds images but no class subfolders; put each class's images in "
            f"its own subfolder ({root}/CLASS/image.png)"
        )
    return DataError(
        f"no supported images found in '{root}'; expected one subfolder per class holding "
        f"{exts} files (or a single .csv file)"
    )


def load_image_folder(root: Path, image_size: int | None) -> RawData:
    """Read an image folder into :class:`RawData` (images ``(N, C, S, S)`` float32 in [0, 1])."""
    layout = _layout(root)
    files = [
        _Image(split, cdir.name, f)
        for split, folder in layout.items()
        for cdir in _subdirs(folder)
        for f in cdir.rglob("*")
        if _is_image(f, cdir)
    ]
    if not any(f.split == "train" for f in files):
        raise _no_images(layout["train"])
    files.sort(key=lambda f: f.path.relative_to(root).as_posix())
    hasher, usable, skipped = ContentHasher(), [], []
    for split, cls, path, _, _ in files:
        data = path.read_bytes()
        hasher.add_file(path.relative_to(root).as_posix(), data)
        try:
            gray, side = _probe(data)
        except Exception:  # PIL raises many types for bad files
            skipped.append(str(path))
            continue
        usable.append(_Image(split, cls, path, gray, side))
    if skipped:  # one warning naming them, however many there are
        shown = ", ".join(f"'{p}'" for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(f"skipping {len(skipped)} unreadable image(s): {shown}{more}", stacklevel=3)
    _check_counts(layout["train"], files, usable)
    mode = "L" if all(u.gray for u in usable) else "RGB"
    median = float(np.median([u.side for u in usable if u.split == "train"]))
    size = image_size or int(np.clip(round(median), MIN_SIDE, MAX_SIDE))
    xs, ys = {}, {}
    for split in layout:
        items = [u for u in usable if u.split == split]
        arrs = [_decode(u.path, mode, size) for u in items]
        empty = np.zeros((0, 3 if mode == "RGB" else 1, size, size), np.uint8)
        xs[split] = (np.stack(arrs) if arrs else empty).astype(np.float32) / 255.0
        ys[split] = np.asarray([u.cls for u in items], dtype=str)
    return RawData(
        "image", xs, ys, hasher.hexdigest(), fit_channel_norm, flip=True, skipped_files=skipped
    )


def _check_counts(train_dir: Path, files: list[_Image], usable: list[_Image]) -> None:
    """Each training class folder needs at least 2 readable images."""
    classes = sorted(d.name for d in _subdirs(train_dir))
    for cls in classes:
        ok = sum(1 for u in usable if u.split == "train" and u.cls == cls)
        if ok >= 2:
            continue
        total = sum(1 for f in files if f.split == "train" and f.cls == cls)
        bad = f" ({total - ok} unreadable skipped)" if total > ok else ""
        raise DataError(
            f"class folder '{train_dir / cls}' has {ok} readable image(s){bad}; each class needs "
            "at least 2; add images or remove the folder"
        )
