"""Where studies live (``samtune.search._storage``), one rule at a time: default study names,
the password mask, SQLite paths, the heartbeat settings, SQLite's immediate transactions, and
each refusal's text (no password in any of them)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest

from samtune.errors import SamtuneError
from samtune.search._storage import (
    _hide_password,
    default_study_name,
    heartbeat_interval,
    load_study,
    mask_url,
    open_storage,
    sqlite_path,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("data, model, name", [
    ("builtin:digits", None, "digits"), ("./my/set/", None, "set"), ("a b&c.csv", None, "a-b-c"),
    ("x.csv", "pkg:f n", "x-pkg-f-n"), ("!!.csv", None, "study"), ("builtin:wine", "", "wine"),
])
def test_a_default_study_name_is_the_datas_stem_and_the_model_in_safe_characters(data, model, name):
    assert default_study_name(data, model) == name


@pytest.mark.parametrize("url, shown", [
    ("postgresql://me:a:b@h/db", "postgresql://me:***@h/db"),  # a colon in the password
    ("mysql+pymysql://me:@h/db", "mysql+pymysql://me:***@h/db"),
    ("postgresql://h:5432/db", "postgresql://h:5432/db"),  # a port is not a password
    (None, None),
])
def test_the_mask_replaces_the_password_whatever_it_holds(url, shown):
    assert mask_url(url) == shown


def test_a_message_loses_the_password_and_the_url_it_came_with():
    url = "postgresql://me:s3cret@h/db"
    text = f"could not connect to {url}: password s3cret rejected"
    assert _hide_password(text, url) == "could not connect to postgresql://me:***@h/db: password *** rejected"
    assert _hide_password("nothing here", "sqlite:///a.db") == "nothing here"


def test_sqlite_paths_are_read_from_the_url_only_for_sqlite():
    assert sqlite_path("sqlite:///studies/a.db") == Path("studies/a.db")
    assert sqlite_path("sqlite:////abs/a.db") == Path("/abs/a.db")
    assert sqlite_path("postgresql://h/db") is None


def test_a_missing_database_is_not_created_when_reading(tmp_path):
    path = tmp_path / "none.db"
    with pytest.raises(SamtuneError, match=r"no study database at '.*none\.db'; run 'samtune search' first"):
        open_storage(f"sqlite:///{path}", create=False)
    assert not path.exists()


def test_a_location_that_is_not_a_url_is_refused_with_an_example():
    with pytest.raises(SamtuneError) as err:
        open_storage("me:pw@somewhere")
    assert "is not a database URL; use e.g. sqlite:///studies/x.db" in str(err.value)
    assert "pw" not in str(err.value) and "me:***@somewhere" in str(err.value)


def test_a_missing_driver_names_the_fix_and_hides_the_password():
    with pytest.raises(SamtuneError) as err:
        open_storage("mysql+pymysql://me:s3cret@127.0.0.1/db")
    text = str(err.value)
    assert "database driver is not installed" in text and "pip install pymysql" in text
    assert "s3cret" not in text and "me:***@" in text


def test_a_heartbeat_sets_the_interval_and_three_beats_of_grace(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat=7)
    assert heartbeat_interval(storage) == 7
    assert storage.grace_period == 21
    assert heartbeat_interval(open_storage(f"sqlite:///{tmp_path / 'n.db'}")) is None
    assert heartbeat_interval(object()) is None


def test_sqlite_transactions_begin_immediate_and_a_directory_is_made(tmp_path):
    path = tmp_path / "deep" / "er" / "t.db"
    storage = open_storage(f"sqlite:///{path}")
    assert path.parent.is_dir()
    seen = []
    from sqlalchemy import event

    event.listen(storage.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    optuna.create_study(study_name="t", storage=storage)
    with storage.engine.connect() as conn:
        assert conn.connection.dbapi_connection.isolation_level is None  # the driver keeps out
    assert "BEGIN IMMEDIATE" in seen


def test_an_unknown_study_lists_those_the_storage_holds(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(SamtuneError, match=r"no study named 'x' \(that storage holds no study\)\."):
        load_study("x", storage)
    for name in ("b", "a"):
        optuna.create_study(study_name=name, storage=storage)
    with pytest.raises(SamtuneError, match=r"no study named 'x' \(studies there: b, a\)\."):
        load_study("x", storage)
    assert load_study("a", storage).study_name == "a"


def test_sqlite_waits_a_minute_for_a_lock_and_a_stale_trial_is_retried_twice(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's "experimental" warnings stay inside
        storage = open_storage(f"sqlite:///{tmp_path / 'b.db'}", heartbeat=5)
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
    assert storage.failed_trial_callback._max_retry == 2


def test_an_unknown_driver_gets_the_general_fix():
    with pytest.raises(SamtuneError) as err:
        open_storage("mssql+pyodbc://me:s3cret@h/db")
    assert str(err.value).endswith("; install the database driver the URL names.")
    assert "s3cret" not in str(err.value)


def test_a_study_name_keeps_its_letters_case():
    assert default_study_name("./Data/MyTable.csv") == "MyTable"
