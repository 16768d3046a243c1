"""samtune: find the right Sharpness-Aware Minimization configuration for your data."""

from __future__ import annotations

from samtune.errors import ConfigError, DataError, SamtuneError
from samtune.optim import SAMConfig, SAMOptimizer, build_optimizer, list_variants

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "SAMConfig",
    "SAMOptimizer",
    "SamtuneError",
    "__version__",
    "build_optimizer",
    "list_variants",
]
