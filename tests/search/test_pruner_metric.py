"""The forgetting pruner under ``--metric``: it predicts the reported value from ``val_metric``
(``val_acc`` for histories without it), and accuracy's decisions are unchanged. No training:
studies driven through ask / report / tell."""

from __future__ import annotations

import optuna
import pytest

from samtune.search._forgetting_pruner import ForgettingPruner
from tests.search.test_pruners import SAM_RUNS, SGD_RUNS, _history, _run, _truth

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _with_val_metric(history: list[dict], metric=lambda r: r["val_acc"]) -> list[dict]:
    return [r | {"val_metric": metric(r)} for r in history]


def _study(pruner, transform) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for sam, runs in ((False, SGD_RUNS), (True, SAM_RUNS)):
        for early, flip in runs:
            history = transform(_history(early, sam=sam, flip=flip))
            study.tell(_run(study, "sam" if sam else "sgd", history), _truth(early, sam=sam, flip=flip))
    return study


@pytest.mark.parametrize("early", [0.3, 0.5, 0.7])
def test_val_metric_equal_to_val_acc_gives_the_same_prediction_as_before(early):
    before = ForgettingPruner(n_warmup_steps=2)
    after = ForgettingPruner(n_warmup_steps=2)
    old = _study(before, lambda h: h)
    new = _study(after, _with_val_metric)
    running_old = _run(old, "sam", _history(early, sam=True, epochs=2))
    running_new = _run(new, "sam", _with_val_metric(_history(early, sam=True, epochs=2)))
    assert (before.predict(old, old.trials[-1]) == after.predict(new, new.trials[-1]))
    assert running_old.should_prune() == running_new.should_prune()
    assert before.last_reason == after.last_reason


def test_the_prediction_follows_val_metric_not_val_acc():
    """Every completed trial has the same val_acc; their finals follow val_metric. A running
    trial's prediction then rises with its val_metric (with val_acc read it could not)."""
    pruner = ForgettingPruner(n_warmup_steps=2, ridge_alpha=1e-3)

    def flat(history):  # val_acc (and what derives from it) the same for every trial
        return [r | {"val_acc": 0.5, "val_loss": 1.5, "train_loss": 1.3, "train_acc": 0.52,
                     "val_metric": r["val_acc"]} for r in history]

    study = _study(pruner, flat)
    low = _run(study, "sam", flat(_history(0.35, sam=True, epochs=2)))
    p_low = pruner.predict(study, study.trials[low.number])
    high = _run(study, "sam", flat(_history(0.65, sam=True, epochs=2)))
    p_high = pruner.predict(study, study.trials[high.number])
    assert p_low.predicted < p_high.predicted - 0.1


def test_the_reasons_name_the_reported_value():
    pruner = ForgettingPruner(n_warmup_steps=2, value_name="val_macro_f1")
    study = _study(pruner, _with_val_metric)
    assert _run(study, "sam", _with_val_metric(_history(0.05, sam=True, epochs=2))).should_prune()
    assert "P(final val_macro_f1 >= " in pruner.last_reason
