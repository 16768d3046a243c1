"""A storage URL's password never shows: errors, progress lines, recommendation, study note."""

from __future__ import annotations

import json
import socket
import sys

import optuna
import pytest

from samtune.errors import SamtuneError
from samtune.search._storage import mask_url, open_storage

SECRET = "s3cr3t-pw"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mask_url_hides_only_the_password():
    assert mask_url(f"postgresql+psycopg2://me:{SECRET}@db:5432/x") == "postgresql+psycopg2://me:***@db:5432/x"
    assert mask_url("postgresql://me@db/x") == "postgresql://me@db/x"
    assert mask_url("sqlite:///studies/a.db") == "sqlite:///studies/a.db"


def test_an_unreachable_server_error_does_not_echo_the_password():
    url = f"postgresql+psycopg2://me:{SECRET}@127.0.0.1:{_closed_port()}/samtune"
    with pytest.raises(SamtuneError) as err:
        open_storage(url)
    text = str(err.value)
    assert SECRET not in text and "me:***@127.0.0.1" in text and "\n" not in text


def test_a_missing_postgres_driver_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # import psycopg2 raises ImportError
    with pytest.raises(SamtuneError) as err:
        open_storage(f"postgresql+psycopg2://me:{SECRET}@127.0.0.1:{_closed_port()}/samtune")
    text = str(err.value)
    assert "pip install -e '.[postgres]'" in text and SECRET not in text


@pytest.fixture(scope="module")
def pg_url_with_password():
    from tests.pg_server import postgres_server

    with postgres_server() as url:  # trust authentication: any password is accepted
        yield url.replace("postgres@", f"postgres:{SECRET}@")


@pytest.mark.slow
def test_a_search_on_a_password_url_stores_and_prints_it_masked(pg_url_with_password, tmp_path, capsys):
    from samtune.inspect import publish
    from samtune.search import search

    rec = search("builtin:wine", trials=2, epochs=1, confirm_seeds=1, top_k=1, space="quick",
                 storage=pg_url_with_password, study="secret", out=str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert "postgres:***@" in err and SECRET not in err
    on_disk = (tmp_path / "out" / "recommendation.json").read_text()
    assert SECRET not in on_disk and json.loads(on_disk)["study"]["storage"] == mask_url(pg_url_with_password)
    assert SECRET not in json.dumps(rec.to_dict())
    study = optuna.load_study(study_name="secret", storage=pg_url_with_password)
    publish(study, artifact_dir=tmp_path / "artifacts")
    study = optuna.load_study(study_name="secret", storage=pg_url_with_password)
    assert SECRET not in json.dumps(study.user_attrs) + json.dumps(study._storage.get_study_system_attrs(study._study_id), default=str)
