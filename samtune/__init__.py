"""samtune: find the right Sharpness-Aware Minimization configuration for your data.

>>> import samtune
>>> samtune.list_variants()[:4]
['sgd', 'sam', 'asam', 'gsam']

Main entry points: ``search`` (the CLI's search as a call), ``load_recommendation``,
``autoconfigure`` (optimizer and lr scheduler for your own loop), ``SAMConfig`` and
``build_optimizer``. ``samtune.search`` is both the package holding the search machinery and the
function: ``samtune.search(data, **options)`` calls ``samtune.search.search``.

The public names are imported on first use, so that ``import samtune`` (and ``samtune --help``)
does not load torch, torchvision or Optuna.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from samtune._lazy import resolve
from samtune.errors import ConfigError, DataError, NotFittedError, SamtuneError

__version__ = "0.1.0"

_LAZY = {  # public name -> the module defining it
    "AutoConfig": "samtune.api",
    "SamSearch": "samtune.api",
    "autoconfigure": "samtune.api",
    "load_recommendation": "samtune.api",
    "SAMConfig": "samtune.optim",
    "SAMOptimizer": "samtune.optim",
    "build_optimizer": "samtune.optim",
    "list_variants": "samtune.optim",
    "Recommendation": "samtune.search",
    "SearchOptions": "samtune.search._options",
}

if TYPE_CHECKING:
    from samtune import search
    from samtune.api import AutoConfig, SamSearch, autoconfigure, load_recommendation
    from samtune.optim import SAMConfig, SAMOptimizer, build_optimizer, list_variants
    from samtune.search import Recommendation, SearchOptions


def __getattr__(name: str) -> Any:
    if name == "search":  # a callable package: samtune.search(data, ...)
        return importlib.import_module("samtune.search")
    return resolve("samtune", _LAZY, name, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AutoConfig",
    "ConfigError",
    "DataError",
    "NotFittedError",
    "Recommendation",
    "SAMConfig",
    "SAMOptimizer",
    "SamSearch",
    "SamtuneError",
    "SearchOptions",
    "__version__",
    "autoconfigure",
    "build_optimizer",
    "list_variants",
    "load_recommendation",
    "search",
]
