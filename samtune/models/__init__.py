"""Models that samtune trains: built-in ``mlp``, ``cnn``, ``resnet18``, or a user factory."""

from __future__ import annotations

from samtune.models.registry import build_model, default_model_name, list_models
from samtune.models.signature import model_signature

__all__ = ["build_model", "default_model_name", "list_models", "model_signature"]
