"""Vectorized batch augmentation for image tensors.

Policy: every example is zero-padded by ``max(1, H // 8)`` rows and
``max(1, W // 8)`` columns on each side (zero is the channel mean, since the
data are normalized), a random ``H x W`` window is cut out, and, when flips are
enabled, the window is mirrored left-right with probability 1/2. All random
draws come from one ``torch.Generator``, so a seeded generator gives the same
batch every time. The whole batch is cut with one indexing op on an
``unfold`` view of the padded batch (no Python loop over examples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    x: torch.Tensor, *, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Return a randomly shifted (and maybe mirrored) copy of the ``(B, C, H, W)`` batch ``x``."""
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if b == 0:
        return x
    ph, pw = max(1, h // 8), max(1, w // 8)
    dev = generator.device if generator is not None else x.device
    oy = torch.randint(0, 2 * ph + 1, (b,), generator=generator, device=dev).to(x.device)
    ox = torch.randint(0, 2 * pw + 1, (b,), generator=generator, device=dev).to(x.device)
    # (B, C, 2ph+1, 2pw+1, H, W) view of every window; pick one window per example
    windows = F.pad(x, (pw, pw, ph, ph)).unfold(2, h, 1).unfold(3, w, 1)
    out = windows[torch.arange(b, device=x.device), :, oy, ox]
    if flip:
        mirror = torch.rand(b, generator=generator, device=dev).to(x.device) < 0.5
        out[mirror] = out[mirror].flip(3)
    return out
