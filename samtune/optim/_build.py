"""``build_optimizer``: a ready SAM-family optimizer from a model (or parameters) and a config."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from samtune.optim._config import SAMConfig
from samtune.optim._sam import SAMOptimizer


def build_optimizer(
    model_or_params: nn.Module | Iterable[Any],
    config: SAMConfig | dict[str, Any],
    *,
    total_steps: int | None = None,
    **engine_options: Any,
) -> SAMOptimizer:
    """Build the optimizer ``config`` describes.

    Pass the model itself when you can: its BatchNorm running statistics are then protected
    during the perturbed pass of ``step(closure)`` too. ``total_steps`` feeds decaying rho
    schedules; ``engine_options`` go to :class:`SAMOptimizer` (msharp, msharp_memory_mb, generator).

    >>> import torch
    >>> opt = build_optimizer(torch.nn.Linear(4, 2), SAMConfig(variant="sam", rho=0.05))
    >>> opt.param_groups[0]["rho"]
    0.05
    """
    if isinstance(config, dict):
        config = SAMConfig.from_dict(config)
    if isinstance(model_or_params, nn.Module):
        params = [p for p in model_or_params.parameters() if p.requires_grad]
        return SAMOptimizer(
            params, config, model=model_or_params, total_steps=total_steps, **engine_options
        )
    return SAMOptimizer(model_or_params, config, total_steps=total_steps, **engine_options)
