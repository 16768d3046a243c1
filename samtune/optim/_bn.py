"""BatchNorm policy for SAM's two passes.

- The perturbed pass (at w + e) never changes running statistics, ``num_batches_tracked``
  included: it runs with tracking switched off (batch statistics, buffers untouched).
- The clean pass (at w) updates them as ordinary training would. With m-sharpness the clean pass
  runs per micro-batch, so BN normalizes with m-example statistics ("ghost BN") and the running
  statistics receive one momentum update per micro-batch, in micro-batch order. The vectorized
  path reproduces exactly that sequence (``compose_running_stats``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

STAT_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def bn_modules(model: nn.Module | None) -> list[tuple[str, _BatchNorm]]:
    """BatchNorm modules that keep running statistics."""
    if model is None:
        return []
    return [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, _BatchNorm) and mod.track_running_stats and mod.running_mean is not None
    ]


@contextmanager
def frozen_bn_stats(modules: list[tuple[str, _BatchNorm]]) -> Iterator[None]:
    """Run the body (the perturbed pass) without touching any running statistic.

    With ``track_running_stats`` off, a BatchNorm in training mode normalizes with the batch's
    statistics exactly as before and neither reads nor writes its running buffers (nor
    ``num_batches_tracked``), so nothing needs copying back; in eval mode it still uses them.
    """
    tracking = [mod.track_running_stats for _, mod in modules]
    for _, mod in modules:
        mod.track_running_stats = False
    try:
        yield
    finally:
        for (_, mod), was in zip(modules, tracking):
            mod.track_running_stats = was


def compose_running_stats(
    start: torch.Tensor, per_micro: torch.Tensor, momentum: float
) -> torch.Tensor:
    """Running statistic after k sequential BN updates, from k updates each applied to ``start``.

    Micro-batch j alone would give r_j = (1 - mom) r0 + mom s_j; applied in order they give
    r <- (1 - mom) r + (r_j - (1 - mom) r0).
    """
    r = start.clone()
    for r_j in per_micro:
        r = (1.0 - momentum) * r + (r_j - (1.0 - momentum) * start)
    return r
