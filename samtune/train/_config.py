"""``TrainConfig``: the budget and settings of one training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from samtune.errors import ConfigError


@dataclass
class TrainConfig:
    """How one training run goes (the SAM-family part lives in ``SAMConfig``)."""

    epochs: int = 10  # full passes over the training split
    batch_size: int | None = None  # None: a power of two near n_train/16, clamped to [16, 128]
    warmup_epochs: float = 1.0  # linear lr warm-up, capped at 10% of all steps; then cosine decay
    seed: int = 0  # seeds initialisation order, shuffling, augmentation and randsam noise
    device: str | None = None  # None: "cuda" when a GPU is present, else "cpu"
    bf16: bool = False  # run forward passes under bf16 autocast
    augment: bool | None = None  # None: the data set's default (on for images)
    eval_batch_size: int = 1024  # batch size for validation/test evaluation (no gradients)

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a whole number >= 1, but got epochs={self.epochs!r}.")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ConfigError(
                f"batch size must be a whole number >= 1, but got batch_size={self.batch_size!r}."
            )
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, but got {self.warmup_epochs!r}.")

    def resolve_batch_size(self, n_train: int, m: int | None = None) -> int:
        """The batch size used on ``n_train`` examples, at most n_train: a multiple of m, or the
        whole batch when m is at least the batch (``samtune.optim._micro``'s rule)."""
        if self.batch_size is not None:
            batch = self.batch_size
        else:
            batch = 16
            while batch * 2 <= min(128, n_train / 16):
                batch *= 2
        from samtune.optim._micro import batch_for  # the m rule; imported here: it loads torch

        return batch_for(min(batch, n_train), m)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
