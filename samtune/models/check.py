"""Does a model fit the data? One forward pass on a training batch, before any trial runs."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from samtune.errors import ConfigError

CHECK_BATCH = 4  # examples in the checked batch (at least 2, so BatchNorm in training mode runs)


def _shape(input_shape: tuple[int, ...]) -> str:
    return "(N, " + ", ".join(str(d) for d in input_shape) + ")"


def refuse_lazy(model: nn.Module, input_shape: tuple[int, ...], name: str) -> None:
    """Raise ``ConfigError`` when ``model`` holds lazy modules not yet initialized: samtune
    reads parameter shapes, copies the model and builds optimizers before any forward pass."""
    lazy = sorted({type(m).__name__ for m in model.modules()
                   if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()})
    if lazy:
        raise ConfigError(
            f"model {name} has lazy modules ({', '.join(lazy)}) whose parameters do not exist "
            "before the first forward pass; samtune builds the optimizer and copies the model "
            "first: give their input sizes (e.g. nn.Linear instead of nn.LazyLinear) for inputs "
            f"of shape {_shape(input_shape)}")


def check_model(model: nn.Module, x: torch.Tensor, num_classes: int, name: str) -> None:
    """Raise ``ConfigError`` (one line: input shape, model, what went wrong) unless ``model``
    maps a batch of ``x``'s rows to ``(N, num_classes)`` logits.

    The model is put in training mode and run once without gradients; build the model for the
    check only (it may update BatchNorm statistics).

    >>> check_model(nn.Linear(4, 3), torch.zeros(8, 4), 3, "linear")
    >>> check_model(nn.Linear(4, 2), torch.zeros(8, 4), 3, "linear")
    Traceback (most recent call last):
    ...
    samtune.errors.ConfigError: model linear returns 2 outputs per example for inputs of shape (N, 4), but the data has 3 classes; make its last layer output num_classes (3) logits
    """
    batch = x[:CHECK_BATCH]
    shape = _shape(batch.shape[1:])
    refuse_lazy(model, batch.shape[1:], name)
    model.train()
    try:
        with torch.no_grad():
            out = model(batch)
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise ConfigError(
            f"model {name} fails on a training batch of shape {tuple(batch.shape)} "
            f"({type(exc).__name__}: {text[:300]}); it must take inputs of shape {shape} and "
            f"return (N, {num_classes}) logits") from None
    if not isinstance(out, torch.Tensor):
        raise ConfigError(
            f"model {name} returns a {type(out).__name__} for inputs of shape {shape}; it must "
            f"return one tensor of (N, {num_classes}) logits")
    if out.shape != (len(batch), num_classes):
        if out.dim() == 2 and out.shape[0] == len(batch):
            raise ConfigError(
                f"model {name} returns {out.shape[1]} outputs per example for inputs of shape "
                f"{shape}, but the data has {num_classes} classes; make its last layer output "
                f"num_classes ({num_classes}) logits")
        raise ConfigError(
            f"model {name} returns a tensor of shape {tuple(out.shape)} for a batch of shape "
            f"{tuple(batch.shape)}; it must return (N, {num_classes}) logits")
