"""Loading a user model factory given as ``"package.module:function"``."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from samtune.errors import ConfigError

FACTORY_FORMAT = "'package.module:function', a function taking (input_shape, num_classes)"
"""How a factory spec should look, quoted in error messages."""


def _one_line(exc: BaseException) -> str:
    """``ExcType: message`` with all whitespace runs collapsed, so it fits on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_factory(spec: str) -> Callable[..., object]:
    """Import and return the callable named by ``spec`` (``"package.module:function"``).

    The attribute part may be dotted (``"pkg.mod:Class.create"``). Raises
    :class:`~samtune.errors.ConfigError` for a malformed spec, a module that cannot be
    imported, a missing attribute or one that is not callable.
    """
    module_name, sep, attr_path = spec.partition(":")
    module_name, attr_path = module_name.strip(), attr_path.strip()
    if not sep or not module_name or not attr_path or ":" in attr_path:
        raise ConfigError(f"model factory {spec!r} is malformed; write it as {FACTORY_FORMAT}")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"model factory {spec!r}: cannot import module {module_name!r} ({_one_line(exc)}); "
            "make sure it is installed or on PYTHONPATH and imports cleanly"
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ConfigError(
                f"model factory {spec!r}: module {module_name!r} has no attribute {attr_path!r}; "
                f"check the name after ':' ({FACTORY_FORMAT})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(
            f"model factory {spec!r}: {attr_path!r} is a {type(obj).__name__}, not a callable; "
            f"point it at {FACTORY_FORMAT}"
        )
    return obj


def build_from_factory(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Load the factory named by ``spec`` and call it as ``factory(input_shape, num_classes)``.

    A factory whose signature does not take ``(input_shape, num_classes)`` raises
    :class:`~samtune.errors.ConfigError` before it is called. Exceptions raised inside the
    factory itself propagate unchanged (they are bugs in the user's code, best shown with their
    traceback). A result that is not an ``torch.nn.Module`` raises
    :class:`~samtune.errors.ConfigError`.
    """
    factory = load_factory(spec)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some callables have no signature to read
        signature = None
    if signature is not None:
        try:
            signature.bind(input_shape, num_classes)
        except TypeError as exc:
            raise ConfigError(
                f"model factory {spec!r} takes {signature} but samtune calls it as "
                f"function(input_shape, num_classes), e.g. function({input_shape}, {num_classes}) "
                f"({exc}); change its signature"
            ) from None
    model = factory(input_shape, num_classes)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "make it return the model instance"
        )
    return model
