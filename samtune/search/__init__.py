"""The search: space, objective, pruners, storage, confirmation and the recommendation.

Names are imported on first use (``SearchOptions`` and ``PRUNERS`` without torch or Optuna).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from samtune.search._options import PRUNERS, SearchOptions, list_presets

_LAZY = {  # public name -> the module defining it
    "Recommendation": "samtune.search._recommendation",
    "SearchSpace": "samtune.search._space",
    "join": "samtune.search._workers",
    "make_pruner": "samtune.search._pruners",
    "search": "samtune.search._search",
    "stored_recommendation": "samtune.search._search",
    "top_trials_table": "samtune.search._tables",
}

if TYPE_CHECKING:
    from samtune.search._pruners import make_pruner
    from samtune.search._recommendation import Recommendation
    from samtune.search._search import search, stored_recommendation
    from samtune.search._space import SearchSpace
    from samtune.search._tables import top_trials_table
    from samtune.search._workers import join

__all__ = [
    "PRUNERS",
    "Recommendation",
    "SearchOptions",
    "SearchSpace",
    "join",
    "list_presets",
    "make_pruner",
    "search",
    "stored_recommendation",
    "top_trials_table",
]


def _lazy(name: str) -> Any:
    return getattr(importlib.import_module(_LAZY[name]), name)


class _CallableModule(types.ModuleType):
    """Lets ``samtune.search(data, **options)`` call :func:`search` on the package itself, and
    imports the package's names on first use."""

    def __call__(self, data: Any, **options: Any) -> Any:
        return _lazy("search")(data, **options)

    def __getattr__(self, name: str) -> Any:
        if name not in _LAZY:
            raise AttributeError(f"module 'samtune.search' has no attribute {name!r}")
        value = _lazy(name)
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(__all__))


sys.modules[__name__].__class__ = _CallableModule
