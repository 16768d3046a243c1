"""rho schedules (GSAM, Zhuang et al. 2022, for ``lr_prop``): pure functions of the step."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from samtune.errors import ConfigError


def _constant(step: int, rho: float, *, lr: float, lr_max: float, **_: Any) -> float:
    return rho


def _lr_prop(
    step: int, rho: float, *, lr: float, lr_max: float, rho_min: float = 0.0,
    lr_min: float = 0.0, **_: Any,
) -> float:
    # GSAM: rho_t = rho_min + (rho_max - rho_min)(lr_t - lr_min)/(lr_max - lr_min), clipped at 0,
    # so rho also ramps during learning-rate warm-up.
    if lr_max <= lr_min:
        return rho
    return max(0.0, rho_min + (rho - rho_min) * (lr - lr_min) / (lr_max - lr_min))


def _progress(step: int, total_steps: int | None) -> float:
    if not total_steps:
        raise ConfigError(
            "this rho schedule needs total_steps; pass build_optimizer(..., total_steps=N) "
            "or set schedule_kwargs['total_steps']."
        )
    return min(1.0, step / max(1, total_steps - 1))


def _linear(
    step: int, rho: float, *, total_steps: int | None = None, rho_min: float = 0.0, **_: Any
) -> float:
    return rho + (rho_min - rho) * _progress(step, total_steps)


def _cosine(
    step: int, rho: float, *, total_steps: int | None = None, rho_min: float = 0.0, **_: Any
) -> float:
    t = _progress(step, total_steps)
    return rho_min + 0.5 * (rho - rho_min) * (1.0 + math.cos(math.pi * t))


_SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": _constant,
    "lr_prop": _lr_prop,
    "linear": _linear,
    "cosine": _cosine,
}
# Keyword arguments a schedule understands (warmup_steps works with every schedule).
_KWARGS = {"rho_min", "lr_min", "total_steps", "warmup_steps"}


def list_schedules() -> list[str]:
    """Names of the registered rho schedules."""
    return sorted(_SCHEDULES)


@dataclass(frozen=True)
class RhoSchedule:
    """rho as a pure function of the step.

    ``constant`` keeps rho; ``lr_prop`` follows the learning rate between ``rho_min`` and rho
    (GSAM); ``linear`` and ``cosine`` decay from rho to ``rho_min`` over ``total_steps``;
    ``warmup_steps`` (any schedule) ramps rho linearly from rho/warmup_steps over the first steps.

    >>> RhoSchedule("cosine", 0.1, {"total_steps": 11})(10, lr=0.1, lr_max=0.1)
    0.0
    """

    name: str = "constant"
    rho: float = 0.05  # the peak radius; rho_max for lr_prop
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in _SCHEDULES:
            raise ConfigError(
                f"unknown rho schedule {self.name!r}; choose one of {', '.join(list_schedules())}."
            )
        unknown = set(self.kwargs) - _KWARGS
        if unknown:
            raise ConfigError(
                f"unknown schedule_kwargs {sorted(unknown)} for schedule {self.name!r}; "
                f"accepted: {sorted(_KWARGS)}."
            )
        for key in ("rho_min", "lr_min"):
            value = self.kwargs.get(key, 0.0)
            if not (isinstance(value, int | float) and value >= 0):
                raise ConfigError(f"schedule_kwargs {key} must be >= 0, but got {key}={value!r}.")
        for key in ("total_steps", "warmup_steps"):
            value = self.kwargs.get(key)
            if value is not None and not (isinstance(value, int) and value >= 0):
                raise ConfigError(
                    f"schedule_kwargs {key} must be a whole number >= 0, but got {key}={value!r}."
                )

    @property
    def is_constant(self) -> bool:
        return self.name == "constant" and not self.kwargs.get("warmup_steps")

    def __call__(self, step: int, *, lr: float = 0.0, lr_max: float = 0.0) -> float:
        kwargs = {k: v for k, v in self.kwargs.items() if k != "warmup_steps"}
        rho = _SCHEDULES[self.name](step, self.rho, lr=lr, lr_max=lr_max, **kwargs)
        warmup = self.kwargs.get("warmup_steps") or 0
        if warmup and step < warmup:
            rho *= (step + 1) / warmup
        return float(rho)
