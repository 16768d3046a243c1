"""The confirmation's rules at their edges: costs at and without a limit, lrs a factor 1.5
apart, ties, the metric passed on, and a seed's bookkeeping (training replaced by a stub).

Each test names the rule it holds; most were written against mutants of ``_confirm.py`` that
the rest of the suite let through (benchmarks/RESULTS.md, the mutation section)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

from samtune import SAMConfig
from samtune.metrics import Metric
from samtune.search import _confirm
from samtune.search._confirm import (
    Runner,
    by_value_and_loss,
    cheapest_near_best,
    choose_baseline,
    confirm,
    judged_sam,
    mean_utility,
    other_baseline,
    other_lr,
    pick_candidates,
    settle,
)
from samtune.search._evidence import design_looks, gain_evidence, joint_z, z_for
from samtune.search._metric import scale_of

optuna.logging.set_verbosity(optuna.logging.WARNING)
SGD = SAMConfig(variant="sgd", rho=0.0)


def trial(config: SAMConfig, value: float, **attrs):
    return create_trial(value=value, params={"variant": config.variant},
                        distributions={"variant": CategoricalDistribution(["sgd", config.variant])},
                        user_attrs={"config": config.to_dict(), **attrs})


def study_of(*trials) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for t in trials:
        study.add_trial(t)
    return study


def numbers(picked) -> list[int | None]:
    return [None if t is None else t.number for _, t in picked]


def sam(rho: float = 0.1, lr: float = 0.05, **kw) -> SAMConfig:
    return SAMConfig(variant="sam", rho=rho, base_kwargs={"lr": lr}, **kw)


def sgd(lr: float) -> SAMConfig:
    return SAMConfig(variant="sgd", rho=0.0, base_kwargs={"lr": lr})


# -- which trials are candidates ------------------------------------------------------------------


def test_a_trial_costing_exactly_max_cost_is_a_candidate_and_an_unknown_cost_is_not_above_it():
    study = study_of(trial(SGD, 0.7, cost=1.0), trial(sam(0.1), 0.9, cost=2.0),
                     trial(sam(0.2), 0.8))  # no cost and no step time: unknown
    assert numbers(pick_candidates(study, 2, {}, max_cost=2.0)) == [1, 2, 0]
    assert numbers(pick_candidates(study, 2, {}, max_cost=0.5)) == [2, 0]


def test_the_cheapest_near_the_best_is_costed_from_step_times_against_the_baselines():
    study = study_of(trial(SGD, 0.7, step_time=2.0),
                     trial(sam(0.1), 0.90, cost=3.0),
                     trial(sam(0.2), 0.88, step_time=2.4))  # 1.2x the baseline's step
    assert numbers(pick_candidates(study, 1, {}, val_size=100)) == [1, 2, 0]


def test_the_cheapest_near_the_best_includes_the_margins_edge_and_breaks_a_cost_tie_by_value(monkeypatch):
    monkeypatch.setattr(_confirm, "val_margin", lambda best, n: 0.25)  # floor: 0.75 - 0.25 = 0.5
    best = trial(sam(0.1), 0.75, cost=3.0)
    edge = trial(sam(0.2), 0.5, cost=1.5)  # on the floor: within noise
    assert cheapest_near_best([best, edge], 100) is edge
    worse_tie, better_tie = trial(sam(0.4), 0.55, cost=1.2), trial(sam(0.8), 0.6, cost=1.2)
    assert cheapest_near_best([best, worse_tie, better_tie], 100) is better_tie
    unknown = [trial(sam(0.1), 0.75), trial(sam(0.2), 0.7)]  # no cost, no step time
    assert cheapest_near_best(unknown, 100) is None
    assert cheapest_near_best([best], None) is None and cheapest_near_best([], 100) is None


def test_by_value_and_loss_lists_each_configuration_once():
    a = trial(sam(0.1), 0.9, final_val_loss=0.3)  # best by value and by loss
    b = trial(sam(0.2), 0.8, final_val_loss=0.5)
    c = trial(sam(0.4), 0.7, final_val_loss=0.4)
    got = by_value_and_loss([a, b, c])
    assert got == [a, b, c]  # (a, a), then (b, c): the second by value, the second by loss
    assert len({id(t) for t in got}) == len(got)


# -- another lr and another baseline: a factor 1.5 or more ----------------------------------------


def test_an_lr_exactly_a_factor_other_lr_away_is_another_lr():
    picked, at_3, at_2_9 = trial(sam(lr=2.0), 0.9), trial(sam(lr=3.0), 0.8), trial(sam(lr=2.9), 0.85)
    assert other_lr([at_3], [picked]) is at_3  # 3 / 2 = 1.5 exactly
    assert other_lr([at_2_9, at_3], [picked]) is at_3  # 1.45x is the same lr


@pytest.mark.parametrize("config", [
    {"variant": "sam", "rho": 0.1},  # no base_kwargs at all
    {"variant": "sam", "rho": 0.1, "base_kwargs": {"lr": 0.0}},
    {"variant": "sam", "rho": 0.1, "base_kwargs": {"lr": float("nan")}},
    {"variant": "sam", "rho": 0.1, "base_kwargs": {"lr": "0.1"}},
])
def test_a_trial_without_a_usable_lr_is_never_another_lr(config):
    odd = create_trial(value=0.95, user_attrs={"config": config})
    assert _confirm._lr(odd) is None
    picked = trial(sam(lr=0.1), 0.9)
    assert other_lr([odd], [picked]) is None
    assert other_lr([odd, trial(sam(lr=1.0), 0.8)], [picked]).value == 0.8


def test_the_other_baseline_at_exactly_a_factor_1_5_counts_and_one_lr_keeps_its_better_trial():
    best, edge = trial(sgd(2.0), 0.80), trial(sgd(3.0), 0.70)
    assert other_baseline([best, edge]) is edge
    better, worse = trial(sgd(0.5), 0.75), trial(sgd(0.5), 0.60)  # two trials of one lr below
    assert other_baseline([best, better, worse]) is better
    assert other_baseline([best, trial(sgd(2.9), 0.79)]) is None  # 1.45x: the same lr


# -- the baseline confirmed ------------------------------------------------------------------------


def rec(variant: str, rights: list[int], *, n: int = 1000, skip: int = 0, lr: float = 0.1):
    accs = [r / n for r in rights]
    mean = sum(accs) / len(accs)
    correct = [(torch.arange(n) >= skip) & (torch.arange(n) < skip + r) for r in rights]
    return {"config": {"variant": variant, "base_kwargs": {"lr": lr}}, "correct": correct,
            "test_metric": {"mean": mean, "per_seed": accs},
            "test_accuracy": {"mean": mean, "per_seed": accs}}


def test_another_baseline_must_beat_the_tuned_one_beyond_a_bound_widened_for_several_others():
    tuned = rec("sgd", [700, 702, 698])
    near = rec("sgd", [716] * 3, skip=16, lr=0.2)  # +1.6 pp: beyond one comparison's 1.38
    # bound, within the 1.68 pp of the best of three
    worse = [rec("sgd", [600] * 3, lr=0.05), rec("sgd", [610] * 3, lr=0.4)]
    assert choose_baseline([tuned, near])[0] == [near]
    assert choose_baseline([tuned, near, *worse])[0] == [tuned]


Y = torch.tensor([0] * 900 + [1] * 100)
COSTS = np.array([[0.0, 1.0], [10.0, 0.0]])  # missing class 1 costs ten times a false alarm
COST = Metric("cost:/x/costs.csv", 2, COSTS)


def with_pred(variant: str, pred: torch.Tensor, seeds: int = 3, lr: float = 0.1):
    correct = pred == Y
    acc = correct.double().mean().item()
    cost = COST.score(Y, pred)
    return {"config": {"variant": variant, "base_kwargs": {"lr": lr}}, "correct": [correct] * seeds,
            "pred": [pred] * seeds, "test_accuracy": {"mean": acc, "per_seed": [acc] * seeds},
            "test_metric": {"mean": cost, "per_seed": [cost] * seeds}}


def alarms(found: int, false: int, offset: int = 0) -> torch.Tensor:
    """Predictions that find ``found`` of the 100 class-1 examples and raise ``false`` alarms."""
    pred = torch.zeros(1000, dtype=torch.long)
    pred[900:900 + found] = 1
    pred[offset:offset + false] = 1
    return pred


def test_the_best_baseline_on_a_cost_is_kept_and_a_tie_does_not_replace_it():
    tuned = with_pred("sgd", alarms(0, 0))  # cost 1.0, accuracy 0.90
    cheap = with_pred("sgd", alarms(100, 100), lr=0.2)  # cost 0.10, accuracy 0.90
    costlier = with_pred("sgd", alarms(90, 50), lr=0.3)  # cost 0.15, accuracy 0.94
    tie = with_pred("sgd", alarms(100, 100, offset=200), lr=0.4)  # cost 0.10, other alarms
    kept, aside = choose_baseline([tuned, cheap, costlier, tie], COST, Y)
    assert kept == [cheap] and aside == [tuned, costlier, tie]


def test_mean_utility_ranks_higher_first_and_every_seed_diverged_last():
    assert mean_utility({"test_accuracy": {"mean": 0.8}}) == 0.8
    assert mean_utility({"test_accuracy": {"mean": math.nan}}) == -1.0  # below any accuracy
    assert mean_utility({"test_metric": {"mean": 0.25}}, COST) == -0.25
    assert mean_utility({"test_metric": {"mean": math.nan}}, COST) == -math.inf
    balanced = Metric("balanced_accuracy", 2)
    assert mean_utility({"test_metric": {"mean": 0.6}, "test_accuracy": {"mean": 0.9}}, balanced) == 0.6


def test_the_best_sam_record_is_the_best_on_the_metric():
    accurate = with_pred("sam", alarms(0, 0))  # accuracy 0.90, cost 1.0
    careful = with_pred("asam", alarms(100, 150))  # accuracy 0.85, cost 0.15
    base = with_pred("sgd", alarms(0, 0))
    # no validation scores: the record judged is the best on test, on the metric
    assert judged_sam([base, accurate, careful]) == (accurate, "test")
    assert judged_sam([base, accurate, careful], COST) == (careful, "test")
    assert judged_sam([base]) == (None, "test")


# -- sequential seeds: on the metric ---------------------------------------------------------------


class SeedRunner:
    """settle's runner without training: a record's next seed repeats its last one."""

    def __init__(self, metric):
        self.metric, self.data, self.added = metric, SimpleNamespace(y_test=Y), []

    def add_seed(self, r):
        self.added.append(r["config"]["variant"])
        for key in ("correct", "pred"):
            r[key].append(r[key][-1])
        for key in ("test_accuracy", "test_metric"):
            r[key]["per_seed"].append(r[key]["per_seed"][-1])


def test_settle_adds_seeds_to_the_best_record_on_the_metric_and_says_it_in_the_metrics_unit():
    base = with_pred("sgd", alarms(0, 40), seeds=1)  # cost 1.04
    accurate = with_pred("sam", alarms(0, 0), seeds=1)  # accuracy 0.90 (the best), cost 1.00
    careful = with_pred("asam", alarms(10, 80), seeds=1)  # accuracy 0.83, cost 0.98 (the best)
    assert COST.score(Y, alarms(10, 80)) == pytest.approx(0.98)
    # a cost on a test split has no per-example max-t: the best of two must clear Bonferroni's z
    z, how = joint_z([accurate, careful], base, COST)
    assert how == "bonferroni" and z == z_for(2) > joint_z([accurate, careful], base)[0]
    first = gain_evidence(careful, base, COST, Y, z=z, z_method=how,
                          first_and_most=design_looks([accurate, careful, base], 3))
    runner, said = SeedRunner(COST), []
    stop = settle([base, accurate, careful], runner, max_seeds=3, say=said.append)
    assert f"against a bound of {scale_of(COST).amount(first['bound'])} after 1 seed(s)" in said[0]
    assert stop in ("decided", "max seeds")
    assert runner.added and set(runner.added) == {"sgd", "asam"}
    assert said and all(" pp" not in line for line in said)  # a cost is no percentage


# -- one seed's bookkeeping -----------------------------------------------------------------------


class Clock:
    def __init__(self, *times):
        self.times = list(times)

    def perf_counter(self):
        return self.times.pop(0)


@pytest.fixture
def stub_training(monkeypatch):
    """run_config and predict_classes replaced: seed s predicts ``preds[s]``."""
    preds: list[torch.Tensor] = []
    predicted: list[int] = []  # the seeds predicted so far

    def run_config(config, data, train_config, factory, *, seed, callbacks):
        s = len(predicted)  # the "model" of seed s is its index
        return SimpleNamespace(diverged=False, model=s, epochs_trained=2, step_time=0.01 * (1 + s))

    def predict(model, x, y, *, batch_size, bf16):
        predicted.append(model)
        return preds[model]

    monkeypatch.setattr(_confirm, "run_config", run_config)
    monkeypatch.setattr(_confirm, "predict_classes", predict)
    return preds


def runner(metric=None, folds=None):
    data = SimpleNamespace(x_test=torch.zeros(len(Y), 1), y_test=Y)
    tc = SimpleNamespace(epochs=2, eval_batch_size=64, bf16=False)
    return Runner(data, tc, lambda: None, metric=metric, folds=folds)


def test_a_seed_records_its_accuracy_its_metric_and_the_time_of_every_seed(stub_training, monkeypatch):
    stub_training.extend([alarms(0, 0), alarms(100, 100)])
    monkeypatch.setattr(_confirm, "time", Clock(0.0, 1.5, 10.0, 12.0))
    r = runner(COST)
    record = r.record(sam(), None)
    assert r.add_seed(record) == pytest.approx(0.9) and r.add_seed(record) == pytest.approx(0.9)
    assert record["seconds"] == pytest.approx(3.5) and record["epochs"] == 4
    assert record["test_metric"]["per_seed"] == pytest.approx([1.0, 0.1])  # the cost, not accuracy
    assert record["test_accuracy"]["per_seed"] == pytest.approx([0.9, 0.9])
    assert [p.tolist() for p in record["pred"]] == [alarms(0, 0).tolist(), alarms(100, 100).tolist()]
    assert record["step_time"] == pytest.approx(0.015) and r.last_score == pytest.approx(0.1)


def test_on_folds_each_tested_example_carries_its_utility_on_the_metric(stub_training, monkeypatch):
    stub_training.append(alarms(50, 10))
    monkeypatch.setattr(_confirm, "time", Clock(0.0, 1.0))
    folds = SimpleNamespace(k=2, dataset=lambda data, s: (data, None))
    r = runner(COST, folds)
    record = r.record(sam(), None)
    r.add_seed(record)
    expected = -COSTS[Y.numpy(), alarms(50, 10).numpy()]
    assert record["k"] == 2 and len(record["fold_runs"]) == 1
    assert record["fold_runs"][0].tolist() == expected.tolist()
    assert record["labels"][0].tolist() == Y.tolist()


def test_confirm_adds_its_runs_to_the_runners_total_and_marks_the_first_look(stub_training, monkeypatch):
    stub_training.extend([alarms(0, 0)] * 4)
    monkeypatch.setattr(_confirm, "time", Clock(*[float(i) for i in range(8)]))
    r = runner()
    r.total = 5  # runs counted before (the search's own)
    out = confirm([(sam(), None), (SGD, None)], r.data, r.train_config, r.model_factory,
                  seeds=2, runner=r)
    assert r.total == 9 and r.done == 4
    assert [o["first_look"] for o in out] == [2, 2]
    assert out[1]["tuned"] is False and out[1]["description"].startswith(_confirm.FALLBACK)
    assert out[0]["val_accuracy"] is None and out[0]["trial"] is None
