"""Small convolutional network for small images (8x8 up to about 64x64)."""

from __future__ import annotations

from torch import nn

CHANNELS = (16, 32, 64)
"""Output channels of the three 3x3 convolution blocks (32/64/128 costs ~2.5x more CPU time)."""

MIN_POOL_SIZE = 4
"""A block max-pools (2x2) only while its spatial size is at least this, so 8x8 inputs keep 2x2."""


def build_cnn(
    input_shape: tuple[int, ...], num_classes: int, *, batchnorm: bool = True
) -> nn.Sequential:
    """Build 3 blocks ``conv3x3 -> (BatchNorm2d) -> ReLU -> (MaxPool2d)``, global pool, linear head.

    ``input_shape`` is ``(C, H, W)``. A block max-pools by 2 only while ``min(H, W) >= 4``
    at its input, so an 8x8 input goes 8 -> 4 -> 2 -> 2 and a 32x32 one 32 -> 16 -> 8 -> 4.
    ``batchnorm`` adds ``BatchNorm2d`` after each convolution (which then has no bias).
    On 2 CPU cores a forward+backward pass of 128 8x8 digits takes about 4 ms.
    """
    in_channels, height, width = input_shape
    layers: list[nn.Module] = []
    size = min(height, width)
    for out_channels in CHANNELS:
        layers.append(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batchnorm)
        )
        if batchnorm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
        if size >= MIN_POOL_SIZE:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        in_channels = out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes)]
    return nn.Sequential(*layers)
