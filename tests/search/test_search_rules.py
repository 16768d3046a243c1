"""The search's own helpers (``samtune.search._search``), one rule at a time: what a resumed
study must match, when the test split is too small, whether more confirmation runs fit the
time budget, where the recommendation goes, and the refusals around a study."""

from __future__ import annotations

import time
import warnings
from types import SimpleNamespace

import optuna
import pytest

import samtune.search._search as search_module
from samtune.errors import SamtuneError
from samtune.metrics import Metric
from samtune.search import SearchOptions
from samtune.search._search import (
    _check_same,
    confirm_seeds,
    decomposable,
    default_out_dir,
    differences,
    fits,
    open_search_study,
    stored_recommendation,
    warn_small_test,
)
from samtune.search._space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
SETTINGS = {"fingerprint": "f" * 64, "space": "s" * 64, "epochs": 3, "batch_size": 16,
            "model": "mlp", "search": "staged-1", "metric": "accuracy", "metric_digest": None}


# -- what a resumed study must match ---------------------------------------------------------------

@pytest.mark.parametrize("key, other, phrase", [
    ("fingerprint", "g" * 64, f"data (fingerprint) {'f' * 12} vs {'g' * 12}"),
    ("space", "t" * 64, f"search space {'s' * 12} vs {'t' * 12}"),
    ("epochs", 5, "--epochs 3 vs 5"), ("batch_size", 32, "batch size 16 vs 32"),
    ("model", "cnn", "model mlp vs cnn"), ("search", "staged-2", "search plan staged-1 vs staged-2"),
    ("metric", "macro_f1", "--metric accuracy vs macro_f1"),
])
def test_each_setting_that_differs_is_named_in_one_phrase(key, other, phrase):
    assert differences(SETTINGS, dict(SETTINGS)) == []
    assert differences(SETTINGS, {**SETTINGS, key: other}) == [phrase]


def test_a_study_stored_without_a_metric_was_searched_on_accuracy():
    old = {k: v for k, v in SETTINGS.items() if not k.startswith("metric")}
    assert differences(old, SETTINGS) == []


def _study(settings=None, trials=0):
    study = optuna.create_study(direction="maximize")
    if settings is not None:
        study.set_user_attr("samtune", settings)
    for _ in range(trials):
        study.add_trial(optuna.trial.create_trial(value=0.5))
    return study


def test_a_study_samtune_did_not_make_is_refused_only_when_it_has_trials():
    _check_same(_study(), SETTINGS)  # an empty study: samtune takes it
    with pytest.raises(SamtuneError, match="was not made by samtune; choose another --study"):
        _check_same(_study(trials=1), SETTINGS)
    _check_same(_study(SETTINGS, trials=1), dict(SETTINGS))
    with pytest.raises(SamtuneError, match=r"different --epochs 3 vs 4; batch size 16 vs 8; use a new"):
        _check_same(_study(SETTINGS), {**SETTINGS, "epochs": 4, "batch_size": 8})


def test_a_study_that_minimizes_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="x", storage=url, direction="minimize")
    with pytest.raises(SamtuneError, match="'x' is not a samtune study \\(it minimizes\\)"):
        open_search_study("x", url, SETTINGS, SearchSpace.load("quick"), optuna.pruners.NopPruner(),
                          0, 10, 4)


def test_a_new_study_stores_its_settings_and_a_reopened_one_keeps_them(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    space = SearchSpace.load("quick")
    study = open_search_study("x", url, SETTINGS, space, optuna.pruners.NopPruner(), 0, 10, 4)
    assert study.user_attrs["samtune"] == SETTINGS
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    with pytest.raises(SamtuneError, match="--epochs 3 vs 9"):
        open_search_study("x", url, {**SETTINGS, "epochs": 9}, space, optuna.pruners.NopPruner(), 0, 10, 4)


def test_a_study_without_a_recommendation_says_how_to_get_one(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="x", storage=url, direction="maximize")
    with pytest.raises(SamtuneError, match="'x' has no recommendation yet; finish it with 'samtune search'"):
        stored_recommendation("x", url)


# -- the test split's size ------------------------------------------------------------------------

def test_129_test_examples_are_too_few_for_3_pp_and_130_are_enough():
    with pytest.warns(UserWarning, match=r"129 example\(s\): a gain must exceed about 3\.0 pp .* "
                                         r"gain of 3 pp cannot be shown; use more data \(at least "
                                         r"130 test examples\)"):
        warn_small_test(SimpleNamespace(y_test=range(129)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_small_test(SimpleNamespace(y_test=range(130)))


def test_a_metric_that_is_not_a_mean_over_examples_is_judged_on_the_test_split_not_folds():
    assert decomposable(None) and decomposable(Metric("accuracy", 3))
    assert decomposable(Metric("cost:/c.csv", 2, [[0, 1], [1, 0]]))
    assert not decomposable(Metric("macro_f1", 3))
    with pytest.warns(UserWarning, match=r"test split has 27 example"):
        warn_small_test(SimpleNamespace(y_test=range(27), folds=SimpleNamespace(n=300)),
                        Metric("macro_f1", 3))


# -- the time budget ---------------------------------------------------------------------------------

def _confirmed(*seconds_and_seeds):
    return [{"seconds": s, "test_accuracy": {"per_seed": [0.5] * n}} for s, n in seconds_and_seeds]


def test_more_runs_fit_when_the_slowest_configurations_runs_end_before_the_budget():
    confirmed = _confirmed((30.0, 3), (8.0, 2), (5.0, 0))  # 10 s and 4 s a run; none yet
    now = time.time()
    assert fits(confirmed, 3, now + 40)  # 3 x 10 s
    assert not fits(confirmed, 3, now + 25)
    assert fits(confirmed, 100, None)
    assert fits(_confirmed((5.0, 0)), 100, now + 1)  # no run timed yet: nothing to go by


def test_without_a_run_time_or_a_budget_the_confirmation_keeps_its_seeds(monkeypatch):
    said = []
    opts = SearchOptions(confirm_seeds=3)
    for run in (None, 0.0):
        monkeypatch.setattr(search_module, "run_seconds", lambda s, run=run: run)
        assert confirm_seeds(None, opts, 2, time.time() + 1, said.append) == 3
    monkeypatch.setattr(search_module, "run_seconds", lambda s: 10.0)
    assert confirm_seeds(None, opts, 2, time.time() + 1000, said.append) == 3
    assert said == []  # nothing to say while every seed fits


# -- where the recommendation goes --------------------------------------------------------------------

def test_the_recommendation_goes_next_to_a_sqlite_file_else_under_samtune_out(tmp_path):
    db = tmp_path / "studies" / "s.db"
    assert default_out_dir(f"sqlite:///{db}", "x") == db.parent / "x"
    assert str(default_out_dir("sqlite:///:memory:", "x")) == "samtune-out/x"
    assert str(default_out_dir("postgresql://u:p@localhost/db", "x")) == "samtune-out/x"


# -- what a request resolves to (plan) ------------------------------------------------------------

@pytest.fixture(scope="module")
def wine():
    from samtune.data import load_data

    return load_data("builtin:wine")


def test_the_settings_a_study_must_match_come_from_the_request(wine):
    import samtune
    from samtune.search._search import plan

    p = plan(wine, SearchOptions(epochs=3, batch_size=8, space="quick", seed=2))
    expected_space = SearchSpace.load("quick").with_batch_size(8)
    assert p.settings == {
        "fingerprint": wine.fingerprint, "space": expected_space.digest(), "space_name": "quick",
        "epochs": 3, "batch_size": 8, "model": "mlp", "dataset": wine.describe(),
        "samtune_version": samtune.__version__, "search": "staged-1",
        "metric": "accuracy", "metric_digest": None,
    }
    assert (p.train_config.epochs, p.train_config.batch_size, p.train_config.seed) == (3, 8, 2)
    assert p.model_name == "mlp" and p.model_label == "'mlp'" and p.metric.name == "accuracy"


def test_a_fixed_lr_and_the_default_batch_size_reach_the_space(wine):
    from samtune.search._search import plan

    p = plan(wine, SearchOptions(lr=0.2, space="quick", metric="macro_f1"))
    assert p.train_config.batch_size == 16  # 124 training examples: the smallest default
    assert p.space.digest() == SearchSpace.load("quick").with_batch_size(16).fix_lr(0.2).digest()
    assert p.settings["metric"] == "macro_f1" and p.metric.name == "macro_f1"
    assert p.space.digest() != plan(wine, SearchOptions(space="quick")).space.digest()


def test_a_module_is_named_by_its_signature_and_its_class(wine):
    from torch import nn

    from samtune.models import model_signature
    from samtune.search._search import plan

    module = nn.Sequential(nn.Linear(13, 3))
    p = plan(wine, SearchOptions(space="quick"), module)
    assert p.model_name == f"module:{model_signature(module)[:16]}" == p.settings["model"]
    assert p.model_label == "Sequential (the module given)"
    fresh = p.factory()
    assert fresh is not module and isinstance(fresh, nn.Sequential)
