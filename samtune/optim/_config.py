"""``SAMConfig``: everything needed to rebuild a SAM-family optimizer, as plain data."""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from samtune.errors import ConfigError
from samtune.optim._variants import check_rho, get_variant
from samtune.schedules import PerturbSchedule, RhoSchedule

BASE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
}
# Defaults filled into base_kwargs when absent: common, safe settings for small vision/tabular nets.
BASE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False},
    "adamw": {"lr": 1e-3, "weight_decay": 0.01},
}
# Keyword arguments of the torch optimizers that samtune does not let through (it owns them).
_BASE_RESERVED = {"params", "foreach", "fused", "capturable", "differentiable", "maximize"}


def _check_base_kwargs(base: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    accepted = set(inspect.signature(BASE_OPTIMIZERS[base]).parameters) - _BASE_RESERVED
    unknown = set(kwargs) - accepted
    if unknown:
        raise ConfigError(
            f"base optimizer {base!r} takes no argument(s) {sorted(unknown)}; "
            f"accepted: {', '.join(sorted(accepted))}."
        )
    lr = kwargs.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 <= lr <= 10:
        raise ConfigError(f"lr must be a number in [0, 10], but got lr={lr!r}.")
    wd = kwargs.get("weight_decay", 0.0)
    if not isinstance(wd, int | float) or wd < 0:
        raise ConfigError(f"weight_decay must be >= 0, but got weight_decay={wd!r}.")
    momentum = kwargs.get("momentum", 0.0)
    if not isinstance(momentum, int | float) or not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), but got momentum={momentum!r}.")
    if kwargs.get("nesterov") and not momentum:
        raise ConfigError("nesterov=True needs momentum > 0; set momentum (e.g. 0.9).")
    return kwargs


@dataclass
class SAMConfig:
    """A SAM-family optimizer configuration: the object a recommendation emits and a user loads.

    >>> cfg = SAMConfig(variant="asam", rho=1.0, m=16)
    >>> SAMConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    variant: str = "sam"  # a name from samtune.optim.list_variants(); "sgd" is the baseline
    rho: float = 0.05  # perturbation radius (peak value when scheduled); asam wants ~10x sam's
    schedule: str = "constant"  # rho schedule: constant, lr_prop, linear, cosine
    schedule_kwargs: dict[str, Any] = field(default_factory=dict)  # rho_min, warmup_steps, ...
    m: int | None = None  # perturbation micro-batch size; None = the whole batch (plain SAM)
    base: str = "sgd"  # base optimizer: "sgd" or "adamw"
    base_kwargs: dict[str, Any] = field(default_factory=dict)  # lr, momentum, weight_decay, ...
    variant_kwargs: dict[str, Any] = field(default_factory=dict)  # eta, alpha, gamma, C, prob
    max_grad_norm: float | None = None  # clip the final gradient to this norm; None = no clipping
    # which steps perturb: always, late (start), stochastic (p, seed), periodic (every); the
    # other steps are the base optimizer's step (see samtune.schedules.PerturbSchedule)
    perturb: str = "always"
    perturb_kwargs: dict[str, Any] = field(default_factory=dict)  # start, p, seed, every, ...

    def __post_init__(self) -> None:
        spec = get_variant(self.variant)
        self.rho = check_rho(self.rho) if spec.perturbs else float(self.rho)
        if self.base not in BASE_OPTIMIZERS:
            raise ConfigError(
                f"unknown base optimizer {self.base!r}; choose one of {', '.join(BASE_OPTIMIZERS)}."
            )
        self.base_kwargs = _check_base_kwargs(
            self.base, {**BASE_DEFAULTS[self.base], **dict(self.base_kwargs)}
        )
        self.variant_kwargs = spec.resolve_kwargs(self.variant_kwargs)
        self.schedule_kwargs = dict(self.schedule_kwargs)
        RhoSchedule(self.schedule, self.rho, self.schedule_kwargs)  # validates
        self.perturb_kwargs = dict(self.perturb_kwargs)
        PerturbSchedule(self.perturb, self.perturb_kwargs)  # validates
        if self.m is not None and (isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1):
            raise ConfigError(f"m must be a whole number >= 1 or None, but got m={self.m!r}.")
        if self.max_grad_norm is not None and not (
            isinstance(self.max_grad_norm, int | float) and self.max_grad_norm > 0
        ):
            raise ConfigError(
                f"max_grad_norm must be > 0 or None, but got max_grad_norm={self.max_grad_norm!r}."
            )

    @property
    def lr(self) -> float:
        """The base optimizer's learning rate."""
        return float(self.base_kwargs["lr"])

    @property
    def perturbs(self) -> bool:
        """False for the ``sgd`` baseline."""
        return get_variant(self.variant).perturbs

    def rho_schedule(self, total_steps: int | None = None) -> RhoSchedule:
        kwargs = dict(self.schedule_kwargs)
        if total_steps is not None:
            kwargs.setdefault("total_steps", int(total_steps))
        return RhoSchedule(self.schedule, self.rho, kwargs)

    def perturb_schedule(self, total_steps: int | None = None) -> PerturbSchedule:
        kwargs = dict(self.perturb_kwargs)
        if total_steps is not None and self.perturb == "late":
            kwargs.setdefault("total_steps", int(total_steps))
        return PerturbSchedule(self.perturb, kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict (``from_dict`` inverts it).

        ``perturb`` and ``perturb_kwargs`` are left out while they hold their defaults, so the
        dicts of configurations from before they existed (stored trials, hashes) are unchanged.
        """
        d = asdict(self)
        if self.perturb == "always" and not self.perturb_kwargs:
            del d["perturb"], d["perturb_kwargs"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAMConfig:
        """Rebuild from ``to_dict()`` output; unknown keys are refused, missing ones defaulted."""
        if not isinstance(data, dict):
            raise ConfigError(f"a SAMConfig must be a mapping, but got {type(data).__name__}.")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(
                f"unknown SAMConfig field(s) {sorted(unknown)}; accepted: {', '.join(sorted(names))}."
            )
        return cls(**data)

    def describe(self) -> str:
        """One line, for tables and logs."""
        if not self.perturbs:
            return f"sgd baseline ({self.base}, lr={self.lr:.3g})"
        m = "batch" if self.m is None else self.m
        return (
            f"{self.variant} rho={self.rho:.3g}{self._kwargs_text()} schedule={self.schedule} "
            f"m={m}{self._perturb_text()} ({self.base}, lr={self.lr:.3g})"
        )

    def _kwargs_text(self) -> str:
        """The variant's own hyperparameters where they differ from its defaults (asam's eta,
        gsam's alpha, obf's gamma, ...): two configurations that differ only in them are two
        configurations."""
        defaults = get_variant(self.variant).resolve_kwargs({})
        parts = []
        for k, v in sorted(self.variant_kwargs.items()):
            if v is None or v == defaults.get(k):
                continue  # the variant's default: nothing to tell
            shown = f"{v:.3g}" if isinstance(v, float) else str(v)
            parts.append(f" {k}={shown}")
        return "".join(parts)

    def _perturb_text(self) -> str:
        if self.perturb == "always":
            return ""
        args = ",".join(f"{k}={v}" for k, v in sorted(self.perturb_kwargs.items()))
        return f" perturb={self.perturb}" + (f"({args})" if args else "")
