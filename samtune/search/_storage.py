"""Where studies live: an SQLite file under ``studies/`` by default, or any Optuna RDB URL."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from samtune.errors import SamtuneError

STUDIES_DIR = Path("studies")  # relative to the working directory, like the README's commands
SQLITE_TIMEOUT_S = 60  # busy timeout: workers wait for each other's writes instead of failing


def default_study_name(data: str, model: str | None = None) -> str:
    """``builtin:digits`` -> ``digits``; ``./my/data.csv`` -> ``data``; with a model, its name
    is appended: ``("builtin:digits", "resnet18")`` -> ``digits-resnet18``.

    >>> default_study_name("./my/data.csv", "my_pkg.models:make")
    'data-my_pkg.models-make'
    """
    stem = data.split(":", 1)[1] if data.startswith("builtin:") else Path(str(data).rstrip("/")).stem
    if model:
        stem = f"{stem}-{model}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "study"


# user:password@ after the scheme, or at the start of a URL given without one (a typo that
# must not echo the password either)
_PASSWORD = re.compile(r"((?:^|://)[^/?#@:]*:)([^/?#@]*)@")


def mask_url(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***``, for messages and stored records.

    >>> mask_url("postgresql+psycopg2://me:s3cret@db:5432/samtune")
    'postgresql+psycopg2://me:***@db:5432/samtune'
    >>> mask_url("sqlite:///studies/digits.db")
    'sqlite:///studies/digits.db'
    >>> mask_url("me:s3cret@db/samtune")  # the scheme forgotten
    'me:***@db/samtune'
    """
    return None if url is None else _PASSWORD.sub(r"\1***@", url)


def _hide_password(text: str, url: str) -> str:
    """``text`` with ``url``'s password (and the URL itself) masked."""
    match = _PASSWORD.search(url)
    text = text.replace(url, mask_url(url) or "")
    if match and match.group(2):
        text = text.replace(match.group(2), "***")
    return text


_DRIVERS = {"postgresql": "pip install -e '.[postgres]' (psycopg2)",
            "mysql": "pip install pymysql, and use a mysql+pymysql:// URL"}


def default_storage_url(study: str) -> str:
    return f"sqlite:///{STUDIES_DIR / (study + '.db')}"


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


STALE_BEATS = 3  # a trial silent for this many beats is stale (failed, retried)
MAX_RETRY = 2  # times a stale trial (its worker was killed) is retried


def heartbeat_interval(storage: object) -> int | None:
    """Seconds between a running trial's heartbeats; None when the storage sends none."""
    get = getattr(storage, "get_heartbeat_interval", None)
    return get() if get is not None else None


def open_storage(
    url: str, *, create: bool = True, heartbeat: int | None = None
) -> optuna.storages.RDBStorage:
    """An RDB storage with a busy timeout; clear errors for unusable locations.

    With ``heartbeat`` (seconds), running trials send heartbeats; a trial whose worker died
    is marked failed after three missed beats and enqueued again (at most ``MAX_RETRY`` times).
    """
    path = sqlite_path(url)
    engine_kwargs = {}
    if path is not None:
        if not create and not path.exists():
            raise SamtuneError(f"no study database at {str(path)!r}; run 'samtune search' first or pass --storage.")
        directory = path.parent if str(path.parent) else Path(".")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SamtuneError(f"cannot create the study directory {str(directory)!r} ({exc.strerror}); pass --storage with a writable location.") from None
        if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise SamtuneError(f"the study database {str(path)!r} is not writable; fix its permissions or pass --storage with a writable location.")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    elif "://" not in url:
        raise SamtuneError(f"storage {mask_url(url)!r} is not a database URL; use e.g. sqlite:///studies/x.db or postgresql://user@host/db.")
    try:
        with warnings.catch_warnings():  # the retry callback and heartbeats are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            beat = {}
            if heartbeat:
                beat = {"heartbeat_interval": heartbeat, "grace_period": STALE_BEATS * heartbeat,
                        "heartbeat_stale_trial_callback":
                            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)}
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
        if path is not None:
            _immediate_transactions(storage.engine)
        return storage
    except ImportError as exc:
        dialect = url.split(":", 1)[0].split("+", 1)[0]
        fix = _DRIVERS.get(dialect, "install the database driver the URL names")
        raise SamtuneError(f"cannot open storage {mask_url(url)!r}: its database driver is not "
                           f"installed ({exc}); {fix}.") from None
    except (SQLAlchemyError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = _hide_password(first, url)
        raise SamtuneError(f"cannot open storage {mask_url(url)!r}: {first[:200]}; check the URL and that the server is running.") from None


def _immediate_transactions(engine: Any) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna reads a waiting trial and then marks it running as two statements of one
    transaction; with SQLite's default deferred transactions two processes can both read it
    as waiting and both run it (optuna/optuna#4621). An immediate transaction serializes the
    read with the write, so each enqueued trial is popped once. Transactions are short, and
    the busy timeout makes the others wait instead of failing.
    """

    @event.listens_for(engine, "connect")
    def _driver_leaves_transactions_to_us(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are not reused


def load_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        hint = f"studies there: {', '.join(names)}" if names else "that storage holds no study"
        raise SamtuneError(f"no study named {name!r} ({hint}).") from None
