"""samtune: find the right Sharpness-Aware Minimization configuration for your data.

>>> import samtune
>>> samtune.list_variants()[:4]
['sgd', 'sam', 'asam', 'gsam']

Main entry points: ``search`` (the CLI's search as a call), ``load_recommendation``,
``autoconfigure`` (optimizer and lr scheduler for your own loop), ``SAMConfig`` and
``build_optimizer``. ``samtune.search`` is both the package holding the search machinery and the
function: ``samtune.search(data, **options)`` calls ``samtune.search.search``.
"""

from __future__ import annotations

from samtune import search  # a callable package: samtune.search(data, ...)
from samtune.api import AutoConfig, SamSearch, autoconfigure, load_recommendation
from samtune.errors import ConfigError, DataError, NotFittedError, SamtuneError
from samtune.optim import SAMConfig, SAMOptimizer, build_optimizer, list_variants
from samtune.search import Recommendation, SearchOptions

__version__ = "0.1.0"

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
