"""Several workers sharing one study on a real PostgreSQL server on loopback."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from tests.pg_server import postgres_server

pytestmark = pytest.mark.slow  # starts a PostgreSQL server


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def test_workers_share_a_postgres_study_to_a_recommendation(pg_url, tmp_path):
    # one machine starts the study with two workers; a third worker joins it as another
    # machine would, with nothing but the study name and the storage URL
    search = subprocess.Popen(
        [sys.executable, "-m", "samtune.cli", "search", "--data", "builtin:wine", "--trials", "8",
         "--epochs", "2", "--workers", "2", "--space", "quick", "--confirm-seeds", "1", "--top-k", "1",
         "--study", "pg", "--storage", pg_url, "--out", str(tmp_path / "out"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    out, err = search.communicate(timeout=600)
    assert search.returncode == 0, err
    study = optuna.load_study(study_name="pg", storage=pg_url)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 8
    assert len({t.user_attrs["worker_pid"] for t in finished}) >= 2
    assert study.user_attrs["recommendation"]["verdict"] in ("use", "keep-baseline")
    assert (tmp_path / "out" / "recommendation.json").exists()
    # a late worker from "another machine" finds the study done and exits cleanly
    joined = subprocess.run([sys.executable, "-m", "samtune.cli", "worker", "--study", "pg",
                             "--storage", pg_url, "--quiet"], capture_output=True, text=True,
                            timeout=300)
    assert joined.returncode == 0, joined.stderr
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 8
