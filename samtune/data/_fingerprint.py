"""Stable content fingerprints for data sets (sha256; no Python ``hash()``)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


class ContentHasher:
    """Hashes raw inputs: files (relative path + bytes) or named arrays.

    Every item is length-prefixed, so different inputs cannot collide by
    concatenation. Add files in sorted order of their relative path.
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def _chunk(self, data: bytes) -> None:
        self._h.update(len(data).to_bytes(8, "little"))
        self._h.update(data)

    def add_file(self, relpath: str, data: bytes) -> None:
        """Add one file by its relative (posix) path and its bytes."""
        self._chunk(b"file:" + relpath.encode("utf-8"))
        self._chunk(data)

    def add_array(self, name: str, arr: np.ndarray) -> None:
        """Add a named array (dtype, shape and bytes)."""
        arr = np.ascontiguousarray(arr)
        self._chunk(f"array:{name}:{arr.dtype.str}:{arr.shape}".encode())
        self._chunk(arr.tobytes())

    def hexdigest(self) -> str:
        """The hex sha256 of everything added so far."""
        return self._h.hexdigest()


def dataset_fingerprint(content_hash: str, **parts: Any) -> str:
    """Combine the content hash with the loading settings and the resulting layout.

    ``parts`` must be JSON-serializable (settings, class names, shapes, split sizes).
    """
    payload = json.dumps({"content": content_hash, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
