"""``--metric`` in the verdict: hand-made test predictions through ``gain_evidence`` and
``build_recommendation``, where accuracy and the metric disagree."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

import samtune
from samtune.metrics import Metric, confusion
from samtune.search._evidence import gain_evidence, paired_gain
from samtune.search._metric import Scale, metric_key, metric_settings, metric_shown, value_name
from samtune.search._recommendation import Recommendation, build_recommendation

optuna.logging.set_verbosity(optuna.logging.WARNING)

# 90 examples of class 0, 10 of class 1: a baseline that always says 0 has accuracy 0.9 and
# balanced accuracy 0.5.
Y = torch.tensor([0] * 90 + [1] * 10)


def _pred(wrong0: int, right1: int) -> torch.Tensor:
    """Class 0 right but for ``wrong0`` examples (called 1), class 1 right on ``right1``."""
    p = torch.zeros(100, dtype=torch.int64)
    p[:wrong0] = 1
    p[90:90 + right1] = 1
    return p


def _record(variant: str, preds: list[torch.Tensor], metric: Metric, *, step_time: float = 1.0,
            val: float | None = None) -> dict:
    accs = [(p == Y).float().mean().item() for p in preds]
    scores = [metric.score(Y, p) for p in preds]

    def summary(values):
        return {"mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0, "per_seed": values}

    return {"config": samtune.SAMConfig(variant=variant, rho=0.0 if variant == "sgd" else 0.1).to_dict(),
            "description": variant, "trial": None, "val_accuracy": val, "val_metric": val,
            "test_accuracy": summary(accs), "test_metric": summary(scores),
            "correct": [p == Y for p in preds], "pred": preds, "step_time": step_time, "epochs": 1}


def _build(confirmed, metric):
    dataset = SimpleNamespace(describe=lambda: {"classes": ["a", "b"]}, y_test=Y, num_classes=2)
    train = SimpleNamespace(epochs=1, batch_size=16)
    return build_recommendation(optuna.create_study(direction="maximize"), confirmed, dataset,
                                train, "mlp", "sqlite://", "d.csv", max_seeds=1, metric=metric)


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy"])
def test_accuracy_keeps_the_baseline_where_balanced_accuracy_uses_sam(name):
    metric = Metric(name, 2)
    base = _record("sgd", [_pred(0, 0)], metric)  # accuracy 0.90, balanced 0.5
    sam = _record("sam", [_pred(15, 10)], metric)  # accuracy 0.85, balanced (75/90 + 1) / 2
    rec = _build([base, sam], metric)
    assert rec.metric == {"name": name, "description": metric.describe(), "greater_is_better": True}
    if name == "accuracy":
        assert rec.verdict == "keep-baseline" and rec.gain == 0.0
        assert rec.evidence["gain"] == pytest.approx(-0.05)
        assert rec.summary.startswith("SAM does not help here: keep the tuned baseline (sgd); the "
                                      "best SAM-family configuration (sam) scored 0.8500, 5.00 pp worse")
        assert rec.confusion == [[90, 0], [10, 0]] and rec.per_class_recall == [1.0, 0.0]
        assert rec.test_metric == rec.test_accuracy == base["test_accuracy"]
    else:
        gain = (75 / 90 + 1) / 2 - 0.5
        assert rec.verdict == "use" and rec.config.variant == "sam"
        assert rec.gain == pytest.approx(gain) and rec.evidence["gain"] == pytest.approx(gain)
        assert rec.summary.startswith(f"use sam: +{100 * gain:.2f} pp at 1.00x the baseline's cost; "
                                      f"test balanced accuracy {0.5 + gain:.4f} vs baseline "
                                      f"0.5000 (noise bound ")
        assert rec.confusion == [[75, 15], [0, 10]]
        assert rec.per_class_recall == pytest.approx([75 / 90, 1.0])
        assert rec.test_metric["mean"] == pytest.approx(0.5 + gain)
        assert rec.test_accuracy["mean"] == pytest.approx(0.85)  # accuracy is kept alongside
    assert rec.baseline["confusion"] == [[90, 0], [10, 0]]
    assert rec.baseline["per_class_recall"] == [1.0, 0.0]
    assert Recommendation.from_dict(rec.to_dict()).to_dict() == rec.to_dict()


def test_the_confusion_matrix_is_summed_over_the_seeds():
    metric = Metric("macro_f1", 2)
    base = _record("sgd", [_pred(0, 0), _pred(0, 2), _pred(2, 4)], metric)
    sam = _record("sam", [_pred(15, 10), _pred(5, 9)], metric)
    rec = _build([base, sam], metric)
    counts = np.sum([confusion(Y, p, 2) for p in base["pred"]], axis=0)
    assert rec.baseline["confusion"] == counts.tolist() == [[268, 2], [24, 6]]
    assert sum(map(sum, rec.baseline["confusion"])) == len(Y) * 3
    assert rec.baseline["per_class_recall"] == pytest.approx([268 / 270, 6 / 30])
    assert [c["test_metric"] for c in rec.candidates] == [sam["test_metric"], base["test_metric"]]


def test_a_cost_metric_says_mean_cost_and_its_change():
    costs = np.array([[0.0, 1.0], [5.0, 0.0]])  # missing class 1 costs five times more
    metric = Metric("cost:/tmp/costs.csv", 2, costs)
    base = _record("sgd", [_pred(0, 0), _pred(0, 1)], metric)  # mean cost 0.50, 0.45
    sam = _record("sam", [_pred(15, 10), _pred(14, 10)], metric)  # mean cost 0.15, 0.14
    rec = _build([base, sam], metric)
    ev = rec.evidence
    assert rec.verdict == "use" and rec.gain == pytest.approx(0.475 - 0.145)
    assert rec.test_metric["mean"] == pytest.approx(0.145)  # the score: lower is better
    assert rec.summary.startswith(f"use sam: -0.3300 at 1.00x the baseline's cost; test mean cost "
                                  f"0.1450 vs baseline 0.4750 (noise bound {ev['bound']:.4f} (2 x SE {ev['se']:.4f}: ")
    assert rec.metric["greater_is_better"] is False and "lower is better" in rec.metric["description"]


def test_gain_evidence_for_accuracy_is_paired_gain():
    metric = Metric("accuracy", 2)
    base, sam = _record("sgd", [_pred(0, 0)], metric), _record("sam", [_pred(15, 10)], metric)
    one = {**paired_gain(sam, base), "z": 2.0, "z_method": "single", "z_candidates": 2.0,
           "looks": 1, "look": 1, "df": None, "first_look": 1,
           "look_factors": [1.0]}  # one candidate, one seed each, one look: z = 2
    assert gain_evidence(sam, base, None) == gain_evidence(sam, base, metric, Y) == one


def test_gain_evidence_splits_the_se_into_test_and_seed_terms():
    """Analytic for a cost (the per-example term by hand), bootstrap for macro F1 (the seed
    term by hand, the rest of Metric.paired_gain's variance the test term)."""
    costs = np.array([[0.0, 1.0], [5.0, 0.0]])
    cost = Metric("cost:/tmp/c.csv", 2, costs)
    a, b = [_pred(15, 10), _pred(14, 9)], [_pred(0, 0), _pred(0, 2), _pred(1, 1)]
    ev = gain_evidence({"pred": a}, {"pred": b}, cost, Y)
    per_a = np.mean([-costs[Y.numpy(), p.numpy()] for p in a], axis=0)
    per_b = np.mean([-costs[Y.numpy(), p.numpy()] for p in b], axis=0)
    assert ev["test_se"] == pytest.approx(math.sqrt(np.var(per_a - per_b, ddof=1) / 100))
    u_a, u_b = [cost.utility(Y, p) for p in a], [cost.utility(Y, p) for p in b]
    # each side's spread of utility less what its examples' flips alone give it
    per = [np.stack([-costs[Y.numpy(), p.numpy()] for p in side]) for side in (a, b)]
    seed_var = sum(max(0.0, np.var(u, ddof=1) - x.var(0, ddof=1).mean() / 100) / len(u)
                   for u, x in zip((u_a, u_b), per))
    assert seed_var < np.var(u_a, ddof=1) / 2 + np.var(u_b, ddof=1) / 3
    assert ev["seed_se"] == pytest.approx(math.sqrt(seed_var))
    assert ev["gain"] == pytest.approx(np.mean(u_a) - np.mean(u_b))
    assert ev["se"] ** 2 == pytest.approx(ev["test_se"] ** 2 + ev["seed_se"] ** 2)
    assert ev["bound"] == pytest.approx(2 * ev["se"]) and ev["n_test"] == 100 and ev["seeds"] == [2, 3]

    f1 = Metric("macro_f1", 2)
    ev = gain_evidence({"pred": a}, {"pred": b}, f1, Y)
    gain, se = f1.paired_gain(Y, a, b)
    u_a, u_b = [f1.utility(Y, p) for p in a], [f1.utility(Y, p) for p in b]
    whole = np.var(u_a, ddof=1) / 2 + np.var(u_b, ddof=1) / 3  # the flips' share is taken out
    assert ev["gain"] == gain and ev["se"] == pytest.approx(se)
    assert 0.0 <= ev["seed_se"] ** 2 < whole
    assert ev["se"] ** 2 == pytest.approx(ev["test_se"] ** 2 + ev["seed_se"] ** 2)


def test_gain_evidence_with_one_seed_each_has_no_seed_term_and_nothing_when_all_diverged():
    f1 = Metric("macro_f1", 2)
    ev = gain_evidence({"pred": [_pred(15, 10)]}, {"pred": [_pred(0, 0)]}, f1, Y)
    assert ev["seed_se"] is None and ev["test_se"] == pytest.approx(ev["se"])
    ev = gain_evidence({"pred": []}, {"pred": [_pred(0, 0)]}, f1, Y)
    assert math.isnan(ev["gain"]) and math.isnan(ev["se"]) and ev["seeds"] == [0, 1]


def test_the_study_settings_name_the_metric_and_match_costs_by_their_matrix():
    costs = np.array([[0.0, 1.0], [5.0, 0.0]])
    here, there = Metric("cost:/a/c.csv", 2, costs), Metric("cost:/b/other.csv", 2, costs)
    assert metric_key(metric_settings(here)) == metric_key(metric_settings(there))
    changed = Metric("cost:/a/c.csv", 2, costs * 2)
    assert metric_key(metric_settings(here)) != metric_key(metric_settings(changed))
    assert metric_shown(metric_settings(here)).startswith("cost:c.csv (matrix ")
    assert metric_key({}) == metric_key(metric_settings(Metric("accuracy", 2))) == "accuracy"
    assert [value_name(n) for n in (None, "accuracy", "macro_f1", "cost:/a/c.csv")] == [
        "val_acc", "val_acc", "val_macro_f1", "val_neg_cost"]
    assert Scale().signed(0.0123) == "+1.23 pp" and Scale(cost=True).signed(-0.5) == "+0.5000"
