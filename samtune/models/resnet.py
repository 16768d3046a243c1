"""ResNet-18 with a stem for small images."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18


def build_resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build ``torchvision.models.resnet18`` (random init, never downloads) for small images.

    The stem is the CIFAR variant: ``conv1`` is a 3x3, stride 1, padding 1 convolution
    taking ``C`` input channels and the stem max-pool is removed (``nn.Identity``).
    BatchNorm is always on; :func:`samtune.models.build_model` refuses ``batchnorm=False``.
    """
    in_channels = input_shape[0]
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model
