"""Choosing and building a model by name."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from torch import nn

from samtune.errors import ConfigError
from samtune.models.cnn import build_cnn
from samtune.models.factory import build_from_factory
from samtune.models.mlp import build_mlp
from samtune.models.resnet import build_resnet18

SMALL_IMAGE_MAX_SIDE = 32
"""Images whose shorter side is at most this get the small ``cnn`` by default; larger ones ``resnet18``."""

_BUILTIN = ("cnn", "mlp", "resnet18")
"""Names of the built-in models, sorted."""


def list_models() -> list[str]:
    """Return the names of the built-in models: ``["cnn", "mlp", "resnet18"]``."""
    return list(_BUILTIN)


def _check_shape(input_shape: Sequence[int], num_classes: int) -> tuple[tuple[int, ...], int]:
    """Validate ``input_shape`` and ``num_classes``; return them as plain Python ints."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"input shape {input_shape!r} is not a sequence of integers; pass e.g. (64,) or (3, 32, 32)"
        ) from exc
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(
            f"input shape {shape!r} must be non-empty with positive sizes; pass e.g. (64,) or (3, 32, 32)"
        )
    try:
        k = -1 if isinstance(num_classes, bool) else operator.index(num_classes)
    except TypeError:
        k = -1
    if k < 2:
        raise ConfigError(f"num_classes is {num_classes!r}; it must be an integer of at least 2")
    return shape, k


def default_model_name(input_shape: tuple[int, ...]) -> str:
    """Pick a built-in model for ``input_shape``.

    ``"mlp"`` for flat feature vectors ``(F,)``, ``"cnn"`` for images ``(C, H, W)`` with
    ``min(H, W) <= 32``, ``"resnet18"`` for larger images. Any other rank gets ``"mlp"``
    (it flattens its input).
    """
    if len(input_shape) == 3:
        return "cnn" if min(input_shape[1:]) <= SMALL_IMAGE_MAX_SIDE else "resnet18"
    return "mlp"


def build_model(
    name: str | None,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    batchnorm: bool | None = None,
) -> nn.Module:
    """Build a freshly initialised model (no pretrained weights are ever downloaded).

    ``name`` is a built-in name from :func:`list_models` (case-insensitive), ``None`` for
    :func:`default_model_name`, or a user factory ``"package.module:function"`` that is
    imported and called as ``function(input_shape, num_classes)``.

    ``batchnorm`` ``None`` keeps the model's default: off for ``mlp``, on for ``cnn`` and
    ``resnet18``. ``resnet18`` has no BatchNorm-free variant, so ``batchnorm=False`` raises
    :class:`~samtune.errors.ConfigError` for it, as does any explicit ``batchnorm`` for a
    user factory (the factory decides its own layers).
    """
    shape, num_classes = _check_shape(input_shape, num_classes)
    if name is not None and ":" in name:
        if batchnorm is not None:
            raise ConfigError(
                f"batchnorm cannot be set for the user model factory {name!r}; "
                "leave batchnorm unset and choose the layers inside the factory"
            )
        return build_from_factory(name, shape, num_classes)
    key = default_model_name(shape) if name is None else name.strip().lower()
    if key not in _BUILTIN:
        raise ConfigError(
            f"unknown model {name!r}; use one of {', '.join(_BUILTIN)} "
            "or a factory 'package.module:function'"
        )
    if key == "mlp":
        return build_mlp(shape, num_classes, batchnorm=bool(batchnorm))
    if len(shape) != 3:
        raise ConfigError(
            f"model {key!r} needs image inputs (C, H, W) but the input shape is {shape!r}; "
            "use model 'mlp' for this data"
        )
    if key == "cnn":
        return build_cnn(shape, num_classes, batchnorm=batchnorm is not False)
    if batchnorm is False:
        raise ConfigError(
            "model 'resnet18' always uses batch normalization; "
            "drop batchnorm=False or pick model 'cnn' or 'mlp' to train without it"
        )
    return build_resnet18(shape, num_classes)
