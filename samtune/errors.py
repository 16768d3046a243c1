"""Errors that samtune reports to users as one line, without a traceback."""

from __future__ import annotations


class SamtuneError(Exception):
    """A problem with the user's input: the message names it and says how to fix it.

    The CLI prints ``error: <message>`` and exits with status 2.
    """


class ConfigError(SamtuneError, ValueError):
    """A bad hyperparameter or configuration value."""


class DataError(SamtuneError):
    """A data set that cannot be loaded or split."""


class NotFittedError(SamtuneError, AttributeError):
    """A fitted attribute was read before ``fit`` was called."""
