"""``search(metric=...)`` end to end on wine: what the trials report, what the study stores,
what the recommendation and the report carry, and who refuses another metric."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from sklearn.metrics import f1_score

from samtune.errors import SamtuneError
from samtune.inspect import build_report
from samtune.search import search
from samtune.search._search import SETTINGS_ATTR
from samtune.search._workers import RUN_ATTR, RunRecord, worker_objective

K = 3  # wine's classes


@pytest.fixture(scope="module")
def f1_search(tmp_path_factory):
    root = tmp_path_factory.mktemp("f1")
    options = dict(trials=2, epochs=1, confirm_seeds=1, max_confirm_seeds=1, top_k=1, space="quick",
                   storage=f"sqlite:///{root / 's.db'}", study="f1", out=str(root / "out"),
                   progress=False, metric="macro_f1")
    with pytest.warns(UserWarning, match="test split"):
        rec = search("builtin:wine", **options)
    return rec, options, root


def _study(options):
    return optuna.load_study(study_name=options["study"], storage=options["storage"])


def _pairs(counts):
    """(y_true, y_pred) arrays with the given confusion matrix."""
    cells = [(t, p, n) for t, row in enumerate(counts) for p, n in enumerate(row)]
    return (np.repeat([t for t, _, _ in cells], [n for *_, n in cells]),
            np.repeat([p for _, p, _ in cells], [n for *_, n in cells]))


def test_each_trial_reports_its_last_val_metric(f1_search):
    _, options, _ = f1_search
    done = _study(options).get_trials(states=(TrialState.COMPLETE,))
    assert done
    for t in done:
        last = t.user_attrs["history"][-1]
        assert t.value == last["val_metric"] and "val_acc" in last and "forgetting_rate" in last
        assert t.intermediate_values[last["epoch"]] == last["val_metric"]


def test_the_recommendation_carries_the_metric_and_the_confusion_matrices(f1_search):
    rec, _, root = f1_search
    on_disk = json.loads((root / "out" / "recommendation.json").read_text())
    assert on_disk["metric"] == {"name": "macro_f1", "greater_is_better": True,
                                 "description": "macro F1: mean F1 score over the classes (higher is better)"}
    test_size = on_disk["dataset"]["split_sizes"]["test"]
    for part in (on_disk, on_disk["baseline"]):
        counts = part["confusion"]
        assert np.shape(counts) == (K, K) and len(part["per_class_recall"]) == K
        assert np.sum(counts) == test_size * len(part["test_metric"]["per_seed"]) == test_size
        y, p = _pairs(counts)
        assert part["test_metric"]["mean"] == pytest.approx(
            f1_score(y, p, average="macro", labels=range(K), zero_division=0))
        assert part["test_accuracy"]["mean"] == pytest.approx(np.trace(counts) / test_size)
        recall = np.diagonal(counts) / np.maximum(np.sum(counts, axis=1), 1)
        assert part["per_class_recall"] == pytest.approx(recall.tolist())
    assert all("test_metric" in c and "val_metric" in c for c in on_disk["candidates"])
    if rec.verdict != "use":
        assert on_disk["confusion"] == on_disk["baseline"]["confusion"]


@pytest.mark.filterwarnings("ignore:the test split")
def test_the_study_stores_the_metric_and_refuses_another(f1_search):
    _, options, _ = f1_search
    study = _study(options)
    assert study.user_attrs[SETTINGS_ATTR]["metric"] == "macro_f1"
    assert study.user_attrs[SETTINGS_ATTR]["metric_digest"] is None
    with pytest.raises(SamtuneError) as info:
        search("builtin:wine", **{**options, "metric": "accuracy"})
    message = str(info.value)
    assert "different --metric macro_f1 vs accuracy" in message and "\n" not in message


def test_a_worker_takes_the_studys_metric_and_refuses_another(f1_search):
    _, options, _ = f1_search
    study = _study(options)
    run = RunRecord.from_dict(study.user_attrs[RUN_ATTR])
    assert run.metric == "macro_f1" and run.cost_matrix is None
    assert worker_objective(study, run).metric.name == "macro_f1"
    assert worker_objective(study, run, "macro_f1").metric.name == "macro_f1"
    with pytest.raises(SamtuneError, match="searches --metric macro_f1, not balanced_accuracy"):
        worker_objective(study, run, "balanced_accuracy")


def test_the_report_names_the_metric_and_shows_both_confusion_matrices(f1_search):
    _, options, _ = f1_search
    page = build_report(_study(options))
    assert 'id="metric"' in page and "macro F1" in page
    assert 'id="confusion-recommended"' in page and 'id="confusion-baseline"' in page


def test_a_cost_metric_is_minimized_and_its_matrix_travels_with_the_study(tmp_path):
    costs = tmp_path / "costs.csv"
    costs.write_text("true/pred,class_0,class_1,class_2\nclass_0,0,1,1\nclass_1,4,0,1\nclass_2,1,1,0\n")
    options = dict(trials=2, epochs=1, confirm_seeds=1, max_confirm_seeds=1, top_k=1, space="quick",
                   storage=f"sqlite:///{tmp_path / 's.db'}", study="cost", out=str(tmp_path / "out"),
                   progress=False, metric=f"cost:{costs}")
    rec = search("builtin:wine", **options)  # a cost is a mean over examples: judged on folds
    assert rec.evidence["design"] == "folds"
    study = _study(options)
    assert all(t.value <= 0 for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert rec.metric["greater_is_better"] is False and rec.test_metric["mean"] >= 0
    assert len(study.user_attrs[SETTINGS_ATTR]["metric_digest"]) == 64
    run = RunRecord.from_dict(study.user_attrs[RUN_ATTR])
    costs.unlink()  # a worker needs no copy of the file: the run record holds the matrix
    metric = worker_objective(study, run).metric
    assert metric.cost_matrix.tolist() == [[0, 1, 1], [4, 0, 1], [1, 1, 0]]
    moved = tmp_path / "elsewhere.csv"
    moved.write_text("0,1,1\n4,0,1\n1,1,0\n")  # the same matrix under another name: the same metric
    assert worker_objective(study, run, f"cost:{moved}").metric.name == run.metric
    moved.write_text("0,1,1\n9,0,1\n1,1,0\n")
    with pytest.raises(SamtuneError, match="searches --metric cost:costs.csv"):
        worker_objective(study, run, f"cost:{moved}")
