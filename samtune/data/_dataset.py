"""The :class:`Dataset` container returned by :func:`samtune.data.load_data`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from samtune.data._augment import random_crop_flip


@dataclass
class Dataset:
    """A classification data set held entirely in memory as tensors.

    Images are ``(N, C, H, W)`` float32 normalized with the per-channel mean and
    standard deviation of the training split; tabular data is ``(N, F)`` float32.
    Labels are int64 class indices ``0..K-1`` into :attr:`classes`.
    """

    source: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    input_shape: tuple[int, ...]
    fingerprint: str
    augment: bool = False
    flip: bool = False
    skipped_files: list[str] = field(default_factory=list)
    #: ``samtune.data._folds.Folds`` when samtune carved the test split (the confirmation may
    #: then test every example the search did not validate on); None when the data brought it.
    folds: Any = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def split_sizes(self) -> dict[str, int]:
        """Number of examples in each split."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def describe(self) -> dict:
        """A JSON-able summary (for reports and study metadata)."""
        return {
            "fingerprint": self.fingerprint,
            "path": self.source,
            "kind": self.kind,
            "classes": list(self.classes),
            "input_shape": list(self.input_shape),
            "split_sizes": self.split_sizes(),
        }

    def augment_batch(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Randomly crop (with zero padding) and, if :attr:`flip`, mirror a training batch.

        Returns ``x`` unchanged for tabular data or when :attr:`augment` is false.
        Deterministic for a given ``generator`` state.
        """
        if self.kind != "image" or not self.augment:
            return x
        return random_crop_flip(x, flip=self.flip, generator=generator)
