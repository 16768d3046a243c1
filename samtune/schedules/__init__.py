"""rho and learning-rate schedules: pure functions of the step.

A rho schedule is a :class:`RhoSchedule` (name plus keyword arguments); calling it with the step
(and, for ``lr_prop``, the current learning rate) returns rho for that step. The optimizer writes
the value into its param groups' ``"rho"`` field before each step.
"""

from __future__ import annotations

from samtune.schedules._lr import lr_factor
from samtune.schedules._rho import RhoSchedule, list_schedules

__all__ = ["RhoSchedule", "list_schedules", "lr_factor"]
