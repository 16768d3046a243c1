"""The runnable examples in public docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["samtune", "samtune.optim", "samtune.optim._build", "samtune.optim._config",
           "samtune.optim._variants", "samtune.schedules._rho", "samtune.schedules._lr",
           "samtune.search._recommendation", "samtune.search._progress", "samtune.search._metric",
           "samtune.search._evidence", "samtune.search._cost", "samtune.train._loop",
           "samtune.api", "samtune.data._arrays"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
