"""ResNet-18 with a stem sized to the images."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

CIFAR_STEM_MAX_SIDE = 32
"""Up to this shorter side, layer1 runs at full resolution (the CIFAR stem)."""


def build_resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build ``torchvision.models.resnet18`` (random init, never downloads) with a stem for
    the image size, so that its first residual stage sees feature maps of at most about 32 px
    at small sizes (the compute of a CIFAR ResNet-18) and a quarter of the side at large ones:

    - shorter side <= 32: the CIFAR stem, ``conv1`` 3x3 stride 1, no max-pool;
    - 33..64: ``conv1`` 3x3 stride 2, no max-pool (a 64 px image costs what a 32 px one does,
      a quarter of the CIFAR stem's cost at 64 px);
    - larger: torchvision's ImageNet stem, ``conv1`` 7x7 stride 2 and the 3x3 stride-2 max-pool.

    ``conv1`` takes the data's ``C`` input channels. BatchNorm is always on;
    :func:`samtune.models.build_model` refuses ``batchnorm=False``.
    """
    in_channels = input_shape[0]
    side = min(input_shape[1:]) if len(input_shape) == 3 else CIFAR_STEM_MAX_SIDE
    model = resnet18(weights=None, num_classes=num_classes)
    if side <= 2 * CIFAR_STEM_MAX_SIDE:
        stride = 1 if side <= CIFAR_STEM_MAX_SIDE else 2
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=stride, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model
