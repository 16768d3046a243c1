"""The figures plot the numbers they are given (known answers on a synthetic study)."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from samtune.inspect import _figures
from tests.inspect.conftest import SYNTHETIC, synthetic_recommendation


def _complete(variant):
    return [(acc, rho) for v, rho, state, acc, _ in SYNTHETIC if v == variant and state == TrialState.COMPLETE]


def test_best_per_variant_is_the_best_complete_trial_of_each_variant(synthetic):
    fig = _figures.best_per_variant(synthetic.trials)
    bar = fig.data[0]
    assert list(bar.x) == ["sgd", "sam", "asam"]  # baseline first, then the registry's order
    assert list(bar.y) == [max(a for a, _ in _complete(v)) for v in ("sgd", "sam", "asam")]
    assert list(bar.y) == [0.91, 0.95, 0.88]  # the pruned sam trial (0.40) plays no part
    assert bar.marker.color[0] == _figures.VARIANT_COLORS["sgd"]
    assert fig.layout.shapes[0].y0 == 0.91  # the best baseline, drawn across
    low, high = fig.layout.yaxis.range
    assert low <= 0.88 and high > 0.95 and low == pytest.approx(0.80)


def test_forgetting_vs_accuracy_plots_early_signals_of_complete_trials(synthetic):
    fig = _figures.forgetting_vs_accuracy(synthetic.trials)
    complete = [t for t in synthetic.trials if t.state == TrialState.COMPLETE]
    flips = {(tr.name, tr.xaxis): tr for tr in fig.data}
    sam = flips[("sam", "x")]
    expected = [t for t in complete if t.user_attrs["config"]["variant"] == "sam"]
    assert list(sam.x) == [t.user_attrs["early_flip_rate"] for t in expected]
    assert list(sam.y) == [t.value for t in expected]
    assert ("sgd", "x") not in flips  # the baseline has no perturbed pass, hence no flip rate
    sgd = flips[("sgd", "x2")]
    assert len(sgd.x) == 2 and list(sgd.y) == [0.90, 0.91]
    assert sum(len(tr.x) for tr in fig.data if tr.xaxis == "x2") == len(complete)  # pruned left out


def test_trial_states_shows_epochs_per_trial_by_state(synthetic):
    fig = _figures.trial_states(synthetic.trials)
    by_state = {tr.name: tr for tr in fig.data}
    assert set(by_state) == {"complete", "pruned"}
    assert list(by_state["pruned"].x) == [4] and list(by_state["pruned"].y) == [1]
    assert list(by_state["complete"].x) == [0, 1, 2, 3, 5] and set(by_state["complete"].y) == {3}
    assert "5 complete, 1 pruned" in fig.layout.title.text
    assert "forgetting: predicted" in by_state["pruned"].customdata[0][1]


def test_confirmation_shows_mean_and_std_with_the_baseline_highlighted():
    rec = synthetic_recommendation()
    fig = _figures.confirmation(rec)
    points = fig.data[0]
    assert list(points.y) == ["sgd baseline (sgd, lr=0.05)", "sam rho=0.1 (sgd, lr=0.05)"]  # best on top
    assert list(points.x) == [0.90, 0.95]
    assert list(points.error_x.array) == [0.02, 0.01]
    assert list(points.marker.symbol) == ["diamond", "circle"]
    assert fig.layout.shapes[0].x0 == 0.90  # the baseline's mean


def test_figures_of_an_empty_study_do_not_fail():
    for build in (_figures.forgetting_vs_accuracy, _figures.best_per_variant, _figures.trial_states):
        assert build([]).layout.title.text
