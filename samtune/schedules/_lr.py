"""Learning-rate schedule used by the training loop: linear warm-up, then cosine decay."""

from __future__ import annotations

import math


def lr_factor(step: int, *, total_steps: int, warmup_steps: int = 0, final: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``step`` (for ``torch.optim.lr_scheduler.LambdaLR``).

    Linear warm-up from 1/warmup_steps to 1 over ``warmup_steps``, then cosine decay to ``final``.

    >>> lr_factor(0, total_steps=10), lr_factor(9, total_steps=10)
    (1.0, 0.0)
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps - 1)
    t = min(1.0, (step - warmup_steps) / span)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))
