"""--time-budget bounds the whole run; a test split too small for a verdict is warned about."""

from __future__ import annotations

import time
import warnings
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

import samtune.search._search as search_module
from samtune.errors import ConfigError
from samtune.search import SearchOptions, search
from samtune.search._search import confirm_seeds, warn_small_test
from samtune.search._workers import StopForBudget


def test_the_budget_is_a_checked_option():
    assert SearchOptions(time_budget=60).time_budget == 60
    with pytest.raises(ConfigError, match="--time-budget"):
        SearchOptions(time_budget=0)


def test_trials_stop_when_one_more_and_the_confirmation_would_not_fit(monkeypatch):
    stopped = []
    study = SimpleNamespace(stop=lambda: stopped.append(True))
    monkeypatch.setattr("samtune.search._workers.run_seconds", lambda s: 10.0)
    StopForBudget(time.time() + 35, confirm_runs=2)(study, None)  # 10 + 2 x 10 fits in 35
    assert not stopped
    StopForBudget(time.time() + 25, confirm_runs=2)(study, None)
    assert stopped


def test_the_confirmation_uses_fewer_seeds_when_the_budget_is_short(monkeypatch):
    monkeypatch.setattr(search_module, "run_seconds", lambda s: 10.0)
    said = []
    opts = SearchOptions(confirm_seeds=3)
    assert confirm_seeds(None, opts, 2, time.time() + 1000, said.append) == 3
    assert confirm_seeds(None, opts, 2, time.time() + 45, said.append) == 2
    assert confirm_seeds(None, opts, 2, time.time() + 5, said.append) == 1  # never below one
    assert "with 1 seed(s) instead of 3" in said[-1]
    assert confirm_seeds(None, opts, 2, None, said.append) == 3


@pytest.mark.slow
def test_a_search_ends_near_its_time_budget(tiny):
    start = time.monotonic()
    rec = search("builtin:wine", **{**tiny, "trials": 200, "time_budget": 8, "pruner": "none"})
    took = time.monotonic() - start
    study = optuna.load_study(study_name="tiny", storage=tiny["storage"])
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    # a verdict of its own, whichever the trials that fit in 8 s lead to (a budget that ends
    # before the confirmation settles says so: "inconclusive")
    assert 1 <= len(finished) < 200 and rec.verdict in ("use", "keep-baseline", "inconclusive")
    assert rec.evidence or rec.verdict == "keep-baseline"
    assert took < 8 + 6  # a run or two of slack: the estimate is a median trial


def test_a_small_test_split_is_warned_about_before_the_trials(tiny):
    with pytest.warns(UserWarning, match=r"test split has 27 example\(s\).*about 12\.9 pp"):
        warn_small_test(SimpleNamespace(y_test=range(27)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_small_test(SimpleNamespace(y_test=range(300)))
    # on folds the confirmation tests every example outside val: 300 of them are enough
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_small_test(SimpleNamespace(y_test=range(27), folds=SimpleNamespace(n=300)))
    with pytest.warns(UserWarning, match=r"confirmation tests 100 example\(s\) \(every one outside val"):
        warn_small_test(SimpleNamespace(y_test=range(27), folds=SimpleNamespace(n=100)))
    # a metric that is not a mean over examples stays on the carved test split (27 of wine)
    with pytest.warns(UserWarning, match="test split has 27"):
        search("builtin:wine", **{**tiny, "trials": 1, "epochs": 1, "confirm_seeds": 1,
                                  "metric": "balanced_accuracy"})
