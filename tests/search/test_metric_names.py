"""How the search names and scores the user's metric (``samtune.search._metric``): the signed
gain in a sentence, the metric in messages, and which validation scorer ``train`` gets."""

from __future__ import annotations

from samtune.metrics import Metric
from samtune.search._metric import Scale, metric_shown, val_scorer


def test_a_loss_is_written_with_a_minus_and_no_change_with_a_plus():
    assert Scale().signed(-0.0325) == "-3.25 pp"
    assert Scale().signed(0.0) == "+0.00 pp"
    assert Scale().signed(0.01) == "+1.00 pp"
    assert Scale(cost=True).signed(-0.08) == "+0.0800"  # a gain of -0.08 is a higher mean cost


def test_a_cost_metric_is_shown_by_its_files_name_and_the_digests_first_12_characters():
    settings = {"metric": "cost:/data/costs/c.csv", "metric_digest": "0123456789abcdef" * 4}
    assert metric_shown(settings) == "cost:c.csv (matrix 0123456789ab)"
    assert metric_shown({"metric": "macro_f1", "metric_digest": None}) == "macro_f1"
    assert metric_shown({}) == "accuracy"


def test_accuracy_is_scored_by_train_itself_and_any_other_metric_by_its_utility():
    assert val_scorer(None) is None
    assert val_scorer(Metric("accuracy", 3)) is None
    f1 = Metric("macro_f1", 3)
    assert val_scorer(f1) == f1.utility
    cost = Metric("cost:/c.csv", 2, [[0, 5], [1, 0]])
    assert val_scorer(cost)([0, 1, 1], [1, 1, 0]) == -2.0  # minus the mean cost (5 + 0 + 1) / 3
