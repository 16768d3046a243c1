"""Multi-layer perceptron for tabular (or any flattened) inputs."""

from __future__ import annotations

import math

from torch import nn

HIDDEN_WIDTH = 256
"""Width of each of the two hidden layers."""

NUM_HIDDEN = 2
"""Number of hidden layers."""


def build_mlp(
    input_shape: tuple[int, ...], num_classes: int, *, batchnorm: bool = False
) -> nn.Sequential:
    """Build ``Flatten -> [Linear(256) -> (BatchNorm1d) -> ReLU] x 2 -> Linear(num_classes)``.

    Any input shape is accepted: the input is flattened to ``prod(input_shape)`` features.
    ``batchnorm`` adds a ``BatchNorm1d`` after each hidden linear layer (before the ReLU).
    """
    in_features = math.prod(input_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for _ in range(NUM_HIDDEN):
        layers.append(nn.Linear(width, HIDDEN_WIDTH))
        if batchnorm:
            layers.append(nn.BatchNorm1d(HIDDEN_WIDTH))
        layers.append(nn.ReLU())
        width = HIDDEN_WIDTH
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
