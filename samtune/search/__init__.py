"""The search: space, objective, pruners, storage, confirmation and the recommendation."""

from __future__ import annotations

import sys
import types
from typing import Any

from samtune.search._pruners import PRUNERS, make_pruner
from samtune.search._recommendation import Recommendation
from samtune.search._search import SearchOptions, search, stored_recommendation
from samtune.search._space import SearchSpace, list_presets
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


class _CallableModule(types.ModuleType):
    """Lets ``samtune.search(data, **options)`` call :func:`search` on the package itself."""

    def __call__(self, data: Any, **options: Any) -> Recommendation:
        return search(data, **options)


sys.modules[__name__].__class__ = _CallableModule
