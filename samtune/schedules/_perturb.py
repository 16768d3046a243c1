"""Perturbation schedules: which steps perturb at all, as pure functions of the step.

They compose with the rho schedules as a gate: step t perturbs with rho_schedule(t) when the
perturbation schedule says so and takes the base optimizer's step otherwise (no ascent, no
second pass), so their cost follows the share of perturbed steps. The literature behind them:
SAM only in the last part of training (arXiv 2410.10373) and random SAM/SGD switching (RST)
keep most of SAM's gain at a fraction of its cost.

- ``always``: every step (the default).
- ``late``: no step before ``start`` (a fraction of ``total_steps``), then every step.
- ``stochastic``: each step with probability ``p``, drawn from a hash of (``seed``, step):
  reproducible, independent of torch's random state and of how often it is asked.
- ``periodic``: every ``every``-th step, the first one included (steps 0, every, 2 every, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from samtune.errors import ConfigError

_MASK64 = (1 << 64) - 1

# Keyword arguments each schedule takes: name -> (default, what is accepted).
_KWARGS: dict[str, dict[str, Any]] = {
    "always": {},
    "late": {"start": 0.5, "total_steps": None},  # start: share of training without perturbation
    "stochastic": {"p": 0.5, "seed": 0},  # p: probability that a step perturbs
    "periodic": {"every": 2},  # every: one perturbed step in this many
}


def list_perturb_schedules() -> list[str]:
    """Names of the perturbation schedules, ``always`` first."""
    return list(_KWARGS)


def _uniform(seed: int, step: int) -> float:
    """A uniform draw in [0, 1) from (seed, step): SplitMix64 of the pair, top 53 bits."""
    z = (seed * 0x9E3779B97F4A7C15 + step + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class PerturbSchedule:
    """Whether step t perturbs: a pure function of the step.

    >>> [PerturbSchedule("periodic", {"every": 3})(t) for t in range(6)]
    [True, False, False, True, False, False]
    >>> [PerturbSchedule("late", {"start": 0.5, "total_steps": 4})(t) for t in range(4)]
    [False, False, True, True]
    """

    name: str = "always"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in _KWARGS:
            raise ConfigError(
                f"unknown perturbation schedule {self.name!r}; choose one of "
                f"{', '.join(list_perturb_schedules())}."
            )
        accepted = _KWARGS[self.name]
        unknown = set(self.kwargs) - set(accepted)
        if unknown:
            raise ConfigError(
                f"unknown perturb_kwargs {sorted(unknown)} for perturbation schedule "
                f"{self.name!r}; accepted: {sorted(accepted) or 'none'}."
            )
        kw = self.kwargs
        start = kw.get("start", 0.5)
        if isinstance(start, bool) or not isinstance(start, int | float) or not 0 <= start <= 1:
            raise ConfigError(f"perturb_kwargs start must be in [0, 1], but got start={start!r}.")
        total = kw.get("total_steps")
        if total is not None and not (_whole(total) and total >= 0):
            raise ConfigError(
                f"perturb_kwargs total_steps must be a whole number >= 0, but got "
                f"total_steps={total!r}."
            )
        p = kw.get("p", 0.5)
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ConfigError(f"perturb_kwargs p must be in [0, 1], but got p={p!r}.")
        if not (_whole(kw.get("seed", 0)) and kw.get("seed", 0) >= 0):
            raise ConfigError(
                f"perturb_kwargs seed must be a whole number >= 0, but got seed={kw['seed']!r}."
            )
        every = kw.get("every", 2)
        if not (_whole(every) and every >= 1):
            raise ConfigError(
                f"perturb_kwargs every must be a whole number >= 1, but got every={every!r}."
            )

    @property
    def is_always(self) -> bool:
        """True when every step perturbs (nothing to evaluate per step)."""
        return self.name == "always"

    def _get(self, key: str) -> Any:
        return self.kwargs.get(key, _KWARGS[self.name][key])

    def __call__(self, step: int) -> bool:
        if self.name == "always":
            return True
        if self.name == "periodic":
            return step % self._get("every") == 0
        if self.name == "stochastic":
            return _uniform(self._get("seed"), step) < self._get("p")
        total = self._get("total_steps")
        if not total:
            raise ConfigError(
                "the late perturbation schedule needs total_steps; pass "
                "build_optimizer(..., total_steps=N) or set perturb_kwargs['total_steps']."
            )
        return step >= self._get("start") * total

    def share(self, total_steps: int) -> float:
        """The share of the first ``total_steps`` steps that perturb (for cost estimates)."""
        if total_steps <= 0:
            return 0.0
        return sum(self(t) for t in range(total_steps)) / total_steps
