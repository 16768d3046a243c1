"""The m-sharpness paths, registered by name: one small protocol, every path tested against "loop".

A path is a :class:`MsharpPath`: ``supported(ctx, model, k, inputs, autocast)`` says whether it
reproduces the loop for this variant, model and number of micro-batches k (within the memory
bound), and ``run(ctx, model, inputs, targets, loss_fn, k, autocast, scale)`` returns the step's
:class:`StepOutput` and the final gradient (the mean over micro-batches, unscaled). Both take a
:class:`PathContext`, the narrow view of the optimizer a path needs. ``msharp="auto"`` times the
supported paths on the live model and keeps the fastest per k (``_autotune.py``).

Registered, in the order "auto" lists them: ``fused`` (Linear-layer models: low-rank micro-batch
gradients; ``_msharp_linear.py``), ``grouped`` (Conv, Linear and norm layers: micro-batches as
groups; ``_msharp_grouped.py``), ``vmap`` (torch.func; ``_msharp.py``) and ``loop`` (the
reference; ``_msharp_loop.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from samtune.optim import _msharp, _msharp_grouped, _msharp_linear, _msharp_loop
from samtune.optim._context import PathContext
from samtune.optim._output import StepOutput

PathResult = tuple[StepOutput, list[torch.Tensor]]


class MsharpPath(Protocol):
    name: str

    def supported(self, ctx: PathContext, model: nn.Module, k: int, inputs: torch.Tensor,
                  autocast: bool) -> bool: ...

    def run(self, ctx: PathContext, model: nn.Module, inputs: torch.Tensor,
            targets: torch.Tensor, loss_fn: Callable, k: int, autocast, scale: float
            ) -> PathResult: ...


@dataclass(frozen=True)
class Path:
    """A registered path: its name, its ``supported`` check and its ``run``."""

    name: str
    supported: Callable[..., bool]
    run: Callable[..., PathResult]
    description: str = ""


_REGISTRY: dict[str, MsharpPath] = {}


def register_path(path: MsharpPath) -> MsharpPath:
    """Add a path (its name must be new); ``loop`` stays the reference and the fallback."""
    if path.name in _REGISTRY:
        raise ValueError(f"m-sharpness path {path.name!r} is already registered.")
    _REGISTRY[path.name] = path
    return path


def get_path(name: str) -> MsharpPath:
    return _REGISTRY[name]


def list_paths() -> list[str]:
    """Names of the registered paths, fastest-first candidates, ``loop`` last."""
    return sorted(_REGISTRY, key=lambda n: n == "loop")


def candidates(ctx: PathContext, model: nn.Module, k: int, inputs: torch.Tensor,
               autocast: bool, skip: set[str] = frozenset()) -> list[str]:
    """The paths that reproduce the loop here (none of ``skip``), the loop last."""
    names = [n for n in list_paths() if n != "loop" and n not in skip
             and _REGISTRY[n].supported(ctx, model, k, inputs, autocast)]
    return names + ["loop"]


def _fused_supported(ctx, model, k, inputs, autocast) -> bool:
    return _msharp_linear.supported(ctx, model) and _msharp_linear.fits(ctx, k)


def _grouped_supported(ctx, model, k, inputs, autocast) -> bool:
    return _msharp_grouped.supported(ctx, model) and _msharp_grouped.chunk_size(ctx, k) >= 2


def _vmap_supported(ctx, model, k, inputs, autocast) -> bool:
    return _msharp.supported(ctx, model, autocast=autocast) \
        and _msharp.chunk_size(ctx, model, k, inputs) >= 2


for _path in (
    Path("fused", _fused_supported, _msharp_linear.fused_pass,
         "low-rank micro-batch gradients of Linear layers: two full-batch passes"),
    Path("grouped", _grouped_supported, _msharp_grouped.grouped_pass,
         "micro-batches as the groups of grouped convolutions and batched matmuls"),
    Path("vmap", _vmap_supported, _msharp.vectorized_pass, "torch.func vmap of grad"),
    Path("loop", _msharp_loop.supported, _msharp_loop.loop_pass, "the reference loop"),
):
    register_path(_path)
