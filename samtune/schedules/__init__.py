"""rho and learning-rate schedules: pure functions of the step.

A rho schedule is a :class:`RhoSchedule` (name plus keyword arguments); calling it with the step
(and, for ``lr_prop``, the current learning rate) returns rho for that step. The optimizer writes
the value into its param groups' ``"rho"`` field before each step. A :class:`PerturbSchedule`
says which steps perturb at all (``late``, ``stochastic``, ``periodic``); the others take the base
optimizer's step.
"""

from __future__ import annotations

from samtune.schedules._lr import lr_factor
from samtune.schedules._perturb import PerturbSchedule, list_perturb_schedules
from samtune.schedules._rho import RhoSchedule, list_schedules

__all__ = [
    "PerturbSchedule", "RhoSchedule", "list_perturb_schedules", "list_schedules", "lr_factor",
]
