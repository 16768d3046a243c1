"""A fingerprint of a model's architecture."""

from __future__ import annotations

import hashlib

from torch import nn


def model_signature(model: nn.Module) -> str:
    """Return a sha256 hex digest of ``model``'s architecture, independent of weight values.

    It hashes, in order, every submodule's name and class (plus ``extra_repr()`` for
    ``torch.nn`` modules, which holds hyperparameters such as kernel size and stride) and
    every parameter's and buffer's name and shape. Two instances of one architecture give
    the same signature; changing a layer's size or the number of classes changes it.
    """
    lines: list[str] = []
    for name, module in model.named_modules():
        cls = type(module)
        line = f"module {name} {cls.__module__}.{cls.__qualname__}"
        if cls.__module__.startswith("torch.nn."):
            line += f" ({module.extra_repr()})"
        lines.append(line)
    for name, param in model.named_parameters():
        lines.append(f"param {name} {tuple(param.shape)}")
    for name, buf in model.named_buffers():
        lines.append(f"buffer {name} {tuple(buf.shape)}")
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
