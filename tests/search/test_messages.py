"""Wording of the verdict and the prune reasons: a loss says worse, one seed has no spread,
a share below a threshold never prints as the threshold."""

from __future__ import annotations

import optuna

from samtune.search._forgetting_pruner import ForgettingPruner
from tests.search.test_pruners import _history, _run
from tests.search.test_recommendation import _candidate, _mask, _recommend


def test_a_loss_is_called_worse_not_a_negative_gain_below_the_bound():
    n = 40
    base = _candidate("sgd", [_mask(n, [0, 1])] * 2)
    sam = _candidate("sam", [_mask(n, list(range(12)))] * 2)  # 10 more of 40 wrong: -25 pp
    rec = _recommend([base, sam])
    assert rec.verdict == "keep-baseline"
    assert "25.00 pp worse than the baseline" in rec.summary
    assert "-25.00 pp" not in rec.summary and "not above" not in rec.summary


def test_one_confirmation_seed_reports_no_spread_rather_than_zero():
    n = 100
    rec = _recommend([_candidate("sgd", [_mask(n, [0, 1, 2])]), _candidate("sam", [_mask(n, [0, 1])])])
    assert "seed spread unknown with one seed" in rec.summary and "seeds 0.00" not in rec.summary
    two = _recommend([_candidate("sgd", [_mask(n, [0, 1, 2])] * 2), _candidate("sam", [_mask(n, [0, 1])] * 2)])
    assert "seeds 0.00; 2 vs 2 seeds" in two.summary


def test_an_inert_share_just_below_one_percent_does_not_print_as_one_percent():
    pruner = ForgettingPruner()
    study = optuna.create_study(direction="maximize", pruner=pruner)
    history = _history(0.5, sam=True, flip=0.0, epochs=2)
    for record in history:
        record["loss_gap"] = 0.009996 * record["train_loss"]
    trial = _run(study, "sam", history[:1])
    trial.set_user_attr("history", history)
    trial.report(history[1]["val_acc"], step=2)
    assert trial.should_prune()
    assert "0.99% of the training loss" in pruner.last_reason and "(< 1%)" in pruner.last_reason
