"""Public names loaded on first use, so that ``import samtune`` (and ``samtune --help``) does
not import torch, Optuna or torchvision."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def resolve(module: str, table: Mapping[str, str], name: str, namespace: dict[str, Any]) -> Any:
    """The attribute ``name`` of package ``module``, from the module ``table`` names for it;
    cached in ``namespace`` (the package's globals) so the next lookup is a plain one."""
    if name not in table:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(table[name]), name)
    namespace[name] = value
    return value
