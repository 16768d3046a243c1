"""The record the verdict judges is chosen on the validation split, not on test.

Each confirmation seed scores the validation split too (``Runner``); ``judged_sam`` takes the
SAM-family record with the best first-look validation utility, ``judge`` judges its gain at one
comparison's z and stops for futility at the best of several's, and ``settle`` and
``build_recommendation`` judge the same record. Known answers: utilities computed by hand, the
z of ``joint_z``, and a futility margin between 2 and 2.4 standard errors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from samtune import SAMConfig
from samtune.metrics import Metric
from samtune.search import _confirm
from samtune.search._confirm import Runner, judge, judged_sam, settle, val_utility
from samtune.search._evidence import (
    Z,
    decide,
    design_looks,
    final,
    futility_z,
    gain_evidence,
    joint_z,
)
from samtune.search._recommendation import build_recommendation

N = 400  # test examples
Y_VAL = torch.tensor([0] * 80 + [1] * 20)
COST = Metric("cost:/x/costs.csv", 2, np.array([[0.0, 1.0], [10.0, 0.0]]))


def mask(right: int, skip: int = 0) -> torch.Tensor:
    return (torch.arange(N) >= skip) & (torch.arange(N) < skip + right)


def record(variant: str, rights: list[int], vals: list[float] | None, *, rho: float = 0.1,
           skip: int = 0, search_value: float | None = None) -> dict:
    accs = [r / N for r in rights]
    mean = sum(accs) / len(accs)
    config = SAMConfig(variant=variant, rho=0.0 if variant == "sgd" else rho).to_dict()
    c = {"config": config, "description": f"{variant} rho={rho}", "trial": None,
         "val_accuracy": search_value, "val_metric": search_value,
         "test_accuracy": {"mean": mean, "std": 0.0, "per_seed": accs},
         "test_metric": {"mean": mean, "std": 0.0, "per_seed": accs},
         "correct": [mask(r, skip) for r in rights], "step_time": 1.0, "epochs": 4,
         "first_look": len(rights)}
    if vals is not None:
        c["val_scores"] = list(vals)
    return c


# -- each seed scores the validation split ---------------------------------------------------------


@pytest.fixture
def stub_training(monkeypatch):
    """Seed s "trains" model s; it predicts ``preds["val"][s]`` on validation and
    ``preds["test"][s]`` on test; a seed listed in ``preds["diverged"]`` diverges."""
    preds = {"val": [], "test": [], "diverged": set()}
    trained = []

    def run_config(config, data, train_config, factory, *, seed, callbacks):
        s = len(trained)
        trained.append(s)
        return SimpleNamespace(diverged=s in preds["diverged"], model=s, epochs_trained=1,
                               step_time=0.01)

    def predict(model, x, y, *, batch_size, bf16):
        return preds["val" if y is Y_VAL else "test"][model]

    monkeypatch.setattr(_confirm, "run_config", run_config)
    monkeypatch.setattr(_confirm, "predict_classes", predict)
    return preds


def make_runner(metric=None, with_val=True):
    y_test = torch.zeros(50, dtype=torch.long)
    data = SimpleNamespace(x_test=torch.zeros(50, 1), y_test=y_test)
    if with_val:
        data.x_val, data.y_val = torch.zeros(len(Y_VAL), 1), Y_VAL
    tc = SimpleNamespace(epochs=1, eval_batch_size=64, bf16=False)
    return Runner(data, tc, lambda: None, metric=metric)


def finds(found: int, false: int) -> torch.Tensor:
    """Validation predictions finding ``found`` of the 20 class-1 examples, ``false`` alarms."""
    pred = torch.zeros(len(Y_VAL), dtype=torch.long)
    pred[80:80 + found] = 1
    pred[:false] = 1
    return pred


def test_every_seed_scores_the_validation_split_on_the_metric_and_a_diverged_seed_is_nan(stub_training):
    stub_training["val"].extend([finds(20, 10), finds(10, 0), None])
    stub_training["test"].extend([torch.zeros(50, dtype=torch.long)] * 3)
    stub_training["diverged"].add(2)
    r = make_runner(COST)
    rec = r.record(SAMConfig(variant="sam"), None)
    for _ in range(3):
        r.add_seed(rec)
    # utilities: minus the mean cost, 10 false alarms at 1 = -0.1; 10 misses at 10 = -1.0
    assert rec["val_scores"][:2] == pytest.approx([-0.1, -1.0]) and math.isnan(rec["val_scores"][2])
    stub_training["val"].extend([finds(20, 10), finds(10, 0)])  # the models of seeds 3 and 4
    stub_training["test"].extend([torch.zeros(50, dtype=torch.long)] * 2)
    r = make_runner()  # accuracy: 90 of 100 right, then 90
    rec = r.record(SAMConfig(variant="sam"), None)
    for _ in range(2):
        r.add_seed(rec)
    assert rec["val_scores"] == pytest.approx([0.9, 0.9])


def test_data_without_a_validation_split_keeps_no_validation_scores(stub_training):
    stub_training["test"].append(torch.zeros(50, dtype=torch.long))
    r = make_runner(with_val=False)
    rec = r.record(SAMConfig(variant="sam"), None)
    r.add_seed(rec)
    assert rec["val_scores"] == [] and val_utility(rec) is None


# -- which record is judged ------------------------------------------------------------------------


def test_val_utility_is_the_mean_over_the_first_look_and_every_diverged_seed_ranks_last():
    c = record("sam", [300, 300, 300, 300], [0.8, 0.7, 0.9, 0.1])
    c["first_look"] = 3  # the fourth seed was settle's, given to this record alone
    assert val_utility(c) == pytest.approx(0.8)
    assert val_utility(record("sam", [300, 300], [0.8, math.nan])) == pytest.approx(0.8)
    assert val_utility(record("sam", [300, 300], [math.nan, math.nan])) == -math.inf
    assert val_utility(record("sam", [300], None)) is None


def test_the_record_best_on_validation_is_judged_whatever_the_test_split_says():
    base = record("sgd", [300] * 3, [0.75] * 3)
    lucky = record("sam", [330] * 3, [0.74] * 3, rho=0.05)  # best on test, worse on val
    steady = record("sam", [318] * 3, [0.80] * 3, rho=0.1)
    assert judged_sam([base, lucky, steady]) == (steady, "validation")
    assert judged_sam([steady, lucky, base]) == (steady, "validation")  # order does not matter
    assert judged_sam([base]) == (None, "test")


def test_a_validation_tie_goes_to_the_better_search_value_then_to_the_configuration_not_the_order():
    a = record("sam", [300] * 3, [0.8] * 3, rho=0.05, search_value=0.70)
    b = record("sam", [330] * 3, [0.8] * 3, rho=0.1, search_value=0.72)
    assert judged_sam([a, b])[0] is b and judged_sam([b, a])[0] is b
    c, d = (record("sam", [300] * 3, [0.8] * 3, rho=r) for r in (0.05, 0.1))
    assert judged_sam([c, d])[0] is judged_sam([d, c])[0]


def test_without_validation_scores_the_judged_record_is_the_most_seeded_then_the_best_on_test():
    a = record("sam", [330] * 3, [0.7] * 3, rho=0.05)
    b = record("sam", [320] * 3, None, rho=0.1)  # one record without: all are chosen on test
    assert judged_sam([a, b]) == (a, "test")
    b["test_accuracy"]["per_seed"].append(0.8)  # settle gave b a seed: b stays the judged one
    assert judged_sam([a, b]) == (b, "test")


def test_chosen_on_validation_use_needs_one_comparisons_z_and_futility_keeps_the_joint_z():
    base = record("sgd", [300] * 3, [0.75] * 3)
    a = record("sam", [318] * 3, [0.80] * 3, rho=0.05)
    b = record("sam", [315] * 3, [0.70] * 3, rho=0.1, skip=10)
    fam = [a, b]
    joint, how = joint_z(fam, base)
    assert how == "max-t" and joint > Z
    ev = judge(a, "validation", base, None, None, None, (joint, how))
    assert ev["z"] == Z and ev["z_candidates"] == Z and ev["futility_z"] == joint
    assert ev["chosen_on"] == "validation" and ev["z_method"] == "chosen on validation"
    assert ev["bound"] == pytest.approx(Z * ev["se"])
    on_test = judge(a, "test", base, None, None, None, (joint, how))
    assert on_test["z"] == joint and "futility_z" not in on_test and on_test["chosen_on"] == "test"
    assert on_test["gain"] == ev["gain"] and on_test["se"] == ev["se"]


def evidence(gain: float, se: float = 1.0, **kw) -> dict:
    return {"gain": gain, "se": se, "test_se": se, "seed_se": None, "flip_se": 0.0, "df": None,
            "seeds": [3, 3], "z": Z, "z_candidates": Z, "looks": 1, "first_look": 3,
            "look_factors": [1.0], **kw}


def test_futility_is_judged_at_the_futility_z_and_use_at_the_evidences_own():
    # no seed term: the projected se is the se; gain + se = 2.2 lies between 2.0 and 2.4 se
    open_at_z = evidence(1.2)
    assert decide(open_at_z, 3) == "open" and futility_z(open_at_z, 3) == Z
    assert decide({**open_at_z, "futility_z": 2.4}, 3) == "keep-baseline"
    assert futility_z({**open_at_z, "futility_z": 2.4}, 3) == 2.4
    clear = evidence(2.1, futility_z=2.4)  # above Z se: use, whatever the futility z
    assert decide(clear, 3) == "use"


class SeedRunner:
    """settle's runner without training: a record's next seed repeats its last one."""

    def __init__(self):
        self.metric, self.data, self.added = None, SimpleNamespace(y_test=None), []

    def add_seed(self, r):
        self.added.append(r["description"])
        r["correct"].append(r["correct"][-1])
        r["val_scores"].append(r["val_scores"][-1])
        for key in ("test_accuracy", "test_metric"):
            r[key]["per_seed"].append(r[key]["per_seed"][-1])


def test_settle_adds_seeds_to_the_record_best_on_validation_and_the_recommendation_judges_it():
    base = record("sgd", [300, 300], [0.75] * 2)
    lucky = record("sam", [316, 316], [0.74] * 2, rho=0.05)  # +4.0 pp on test, worse on val
    steady = record("sam", [306, 306], [0.80] * 2, rho=0.1, skip=2)  # +1.5 pp: open
    runner = SeedRunner()
    settle([base, lucky, steady], runner, max_seeds=4)
    assert set(runner.added) == {"sgd rho=0.1", "sam rho=0.1"}  # the baseline and steady
    assert len(steady["test_accuracy"]["per_seed"]) > len(lucky["test_accuracy"]["per_seed"])
    dataset = SimpleNamespace(describe=lambda: {"classes": ["a", "b"]}, y_test=None)
    train = SimpleNamespace(epochs=4, batch_size=32)
    study = optuna.create_study(direction="maximize")
    rec = build_recommendation(study, [base, lucky, steady], dataset, train, "mlp", "sqlite:///s.db",
                               "d.csv", max_seeds=4)
    looks = design_looks([lucky, steady, base], 4)
    expected = gain_evidence(steady, base, None, None, z=Z, first_and_most=looks)
    assert rec.evidence["candidate"] == "sam rho=0.1" and rec.evidence["chosen_on"] == "validation"
    assert rec.evidence["gain"] == pytest.approx(expected["gain"])
    assert rec.evidence["bound"] == pytest.approx(expected["bound"])
    assert rec.evidence["futility_z"] == joint_z([steady, lucky], base)[0]
    judged = judge(steady, "validation", base, None, None, looks, joint_z([steady, lucky], base))
    assert rec.verdict == final(judged, 4) and rec.verdict != "use"


# -- what judge and settle pass on (each a mutant of theirs that the tests above let through) ------


def test_the_better_search_value_wins_a_tie_even_where_the_configurations_key_would_not():
    # rho 0.1's key sorts after rho 0.05's: the key alone would pick b
    a = record("sam", [300] * 3, [0.8] * 3, rho=0.05, search_value=0.72)
    b = record("sam", [330] * 3, [0.8] * 3, rho=0.1, search_value=0.70)
    assert judged_sam([a, b])[0] is a and judged_sam([b, a])[0] is a
    unsearched = record("sam", [330] * 3, [0.8] * 3, rho=0.1, search_value=None)
    assert judged_sam([a, unsearched])[0] is a  # no search value ranks below any finite one
    nan_value = record("sam", [330] * 3, [0.8] * 3, rho=0.1, search_value=math.nan)
    assert judged_sam([nan_value, a])[0] is a


def test_val_utility_of_a_first_look_of_one_seed_is_that_seeds_score():
    c = record("sam", [300, 300], [0.6, 0.9])
    c["first_look"] = 1
    assert val_utility(c) == pytest.approx(0.6)


def with_preds(c: dict) -> dict:
    """``c`` with its per-seed test predictions (class 1 where it is right; every label is 1)."""
    c["pred"] = [m.long() for m in c["correct"]]
    return c


def test_judged_on_validation_the_gain_is_the_metrics_and_the_looks_raise_the_first_bound():
    y = torch.ones(N, dtype=torch.long)
    base = with_preds(record("sgd", [300, 290, 310], [0.75] * 3))  # the seeds' spread: looks
    a = with_preds(record("sam", [318, 328, 308], [0.80] * 3, rho=0.05))
    joint = joint_z([a], base, COST)
    looks = design_looks([a, base], 6)
    ev = judge(a, "validation", base, COST, y, looks, joint)
    expected = gain_evidence(a, base, COST, y, z=Z, first_and_most=looks)
    # 18 fewer misses in 400 at a cost of 10 each: +0.45 in utility, ten times the accuracy gain
    assert ev["gain"] == pytest.approx(expected["gain"]) == pytest.approx(0.45)
    assert ev["looks"] == 4 and ev["look"] == 1
    assert ev["z"] == pytest.approx(expected["z"]) and ev["z"] > Z
    assert ev["bound"] == pytest.approx(expected["bound"])


def test_judged_on_test_the_evidence_names_the_joint_z_method():
    base = record("sgd", [300] * 3, [0.75] * 3)
    a = record("sam", [318] * 3, [0.80] * 3, rho=0.05)
    b = record("sam", [315] * 3, [0.70] * 3, rho=0.1, skip=10)
    joint = joint_z([a, b], base)
    ev = judge(a, "test", base, None, None, (3, 6), joint)
    assert ev["z_method"] == "max-t" and ev["z_candidates"] == joint[0] and ev["looks"] == 4


def test_settle_judges_a_record_chosen_on_validation_at_one_comparisons_z():
    # +3.0 pp (10 examples lost, 22 gained) at 2.13 se: above Z se, below the joint z's 2.25
    base = record("sgd", [300] * 3, [0.75] * 3)
    a = record("sam", [312] * 3, [0.80] * 3, rho=0.05, skip=10)
    b = record("sam", [305] * 3, [0.70] * 3, rho=0.1, skip=100)
    ev = gain_evidence(a, base, None, None)
    joint = joint_z([a, b], base)[0]
    assert Z * ev["se"] < ev["gain"] < joint * ev["se"]
    runner = SeedRunner()
    assert settle([base, a, b], runner, max_seeds=3) == "decided"  # chosen on test: "max seeds"
    assert runner.added == []
    del a["val_scores"], b["val_scores"]
    assert settle([base, a, b], SeedRunner(), max_seeds=3) == "max seeds"
