"""model_signature: equal per architecture, independent of weights."""

from __future__ import annotations

import re

import torch
from torch import nn

from samtune.models import build_model, model_signature


def test_signature_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", model_signature(build_model("mlp", (4,), 3)))


def test_equal_for_two_instances_and_independent_of_weights() -> None:
    a = build_model("cnn", (1, 8, 8), 10)
    b = build_model("cnn", (1, 8, 8), 10)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    assert model_signature(a) == model_signature(b)


def test_changes_with_width_classes_or_layers() -> None:
    base = model_signature(build_model("mlp", (4,), 3))
    assert model_signature(build_model("mlp", (5,), 3)) != base
    assert model_signature(build_model("mlp", (4,), 4)) != base
    assert model_signature(build_model("mlp", (4,), 3, batchnorm=True)) != base
    assert model_signature(build_model("cnn", (1, 8, 8), 3)) != model_signature(
        build_model("cnn", (1, 32, 32), 3)
    )  # the 32x32 model pools in every block


def test_sees_hyperparameters_without_parameters() -> None:
    a = nn.Sequential(nn.Conv2d(1, 2, 3, stride=1), nn.MaxPool2d(2))
    b = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.MaxPool2d(2))
    assert model_signature(a) != model_signature(b)
