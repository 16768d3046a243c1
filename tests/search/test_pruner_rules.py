"""The forgetting pruner's rules at their edges, driven through ask / report (no training):
argument checks, divergence, collapse, inertness, and who counts as a baseline."""

from __future__ import annotations

import math

import optuna
import pytest

from samtune.search._forgetting_pruner import ForgettingPruner, _percent_below

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _running(history, *, params=None, stage=None, reports=None):
    """A running trial (frozen) with this history, these params and reports per epoch."""
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    for name, value in (params or {}).items():
        if name == "variant":
            trial.suggest_categorical("variant", [value])
        else:
            trial.suggest_float(name, value, value)
    if history is not None:
        trial.set_user_attr("history", history)
    if stage:
        trial.set_user_attr("stage", stage)
    for step, value in (reports if reports is not None else
                        [(i + 1, 0.5) for i in range(len(history or []))]):
        trial.report(value, step)
    return study, study.trials[-1]


def _prune(pruner, history, **kw):
    study, frozen = _running(history, **kw)
    return pruner.prune(study, frozen), pruner.last_reason


def test_the_ends_of_every_argument_range():
    ForgettingPruner(n_startup_trials=0, n_warmup_steps=0, n_steps=1, collapse_flip_rate=1.0,
                     inert_loss_gap=0.0, top_k=1, min_probability=1.0)
    assert ForgettingPruner().last_reason is None
    for kwargs, message in (
        ({"n_startup_trials": -1}, "n_startup_trials cannot be negative but got n_startup_trials=-1."),
        ({"n_warmup_steps": -1}, "n_warmup_steps cannot be negative but got n_warmup_steps=-1."),
        ({"n_steps": 0}, "n_steps must be at least 1 but got n_steps=0."),
        ({"collapse_flip_rate": 0.0}, "collapse_flip_rate must be in (0, 1] but got collapse_flip_rate=0.0."),
        ({"collapse_flip_rate": 1.01}, "collapse_flip_rate must be in (0, 1] but got collapse_flip_rate=1.01."),
        ({"inert_loss_gap": 1.0}, "inert_loss_gap must be in [0, 1) but got inert_loss_gap=1.0."),
        ({"top_k": 0}, "top_k must be at least 1 but got top_k=0."),
        ({"min_probability": 0.0}, "min_probability must be in (0, 1] but got min_probability=0.0."),
        ({"min_probability": 1.5}, "min_probability must be in (0, 1] but got min_probability=1.5."),
        ({"ridge_alpha": 0.0}, "ridge_alpha must be positive but got ridge_alpha=0.0."),
    ):
        with pytest.raises(ValueError) as err:
            ForgettingPruner(**kwargs)
        assert str(err.value) == message


def test_a_trial_without_reports_or_history_is_kept():
    pruner = ForgettingPruner()
    assert _prune(pruner, None, reports=[]) == (False, None)
    assert _prune(pruner, None, reports=[(1, 0.5)]) == (False, None)  # no history attribute
    assert _prune(pruner, [{}], params={"variant": "sam"}) == (False, None)  # nothing recorded


def test_divergence_names_what_diverged():
    pruner = ForgettingPruner()
    assert _prune(pruner, [{"val_loss": math.inf, "train_loss": 1.0}]) == (
        True, "diverged: val_loss=inf at epoch 1")
    assert _prune(pruner, [{"val_loss": 1.0}, {"val_loss": math.nan, "train_loss": math.nan}]) == (
        True, "diverged: val_loss=nan, train_loss=nan at epoch 2")
    assert _prune(pruner, [{"val_loss": 1.0}], reports=[(1, math.nan)]) == (
        True, "diverged: val_acc=nan at epoch 1")


SAM = {"variant": "sam"}


def test_collapse_at_the_threshold_from_epoch_two_on():
    pruner = ForgettingPruner(collapse_flip_rate=0.5)
    at = [{"flip_rate": 0.1, "loss_gap": 1.0, "train_loss": 1.0},
          {"flip_rate": 0.5, "loss_gap": 1.0, "train_loss": 1.0}]
    assert _prune(pruner, at, params=SAM) == (True, "collapsed perturbation: flip rate 0.500 at epoch 2")
    assert _prune(pruner, at[:1] + [{**at[1], "flip_rate": 0.499}], params=SAM)[0] is False
    assert _prune(pruner, [{**at[1], "flip_rate": 0.9}], params=SAM)[0] is False  # epoch 1
    no_flip = [{"loss_gap": 1.0, "train_loss": 1.0}] * 2  # no flip rate recorded: not a collapse
    assert _prune(pruner, no_flip, params=SAM)[0] is False


@pytest.mark.parametrize("how", [{"params": {"variant": "sgd"}}, {"stage": "baseline"},
                                 {"params": {"lr": 0.1}}])
def test_baselines_are_never_judged_collapsed(how):
    pruner = ForgettingPruner()
    history = [{"flip_rate": 0.9, "loss_gap": 1.0, "train_loss": 1.0}] * 2
    if "lr" in how.get("params", {}):  # no variant param: a baseline has no flip rate recorded
        history = [{"loss_gap": 1.0, "train_loss": 1.0}] * 2
    assert _prune(pruner, history, **how)[0] is False
    # the same history without the baseline marks is a collapsed SAM trial
    if "lr" not in how.get("params", {}):
        assert _prune(pruner, history, params=SAM)[0] is True


def test_the_history_decides_for_a_trial_without_variant_param():
    pruner = ForgettingPruner()
    history = [{"flip_rate": 0.1}, {"flip_rate": 0.8, "loss_gap": 1.0, "train_loss": 1.0}]
    assert _prune(pruner, history, params={"lr": 0.1})[0] is True  # it recorded a flip rate


@pytest.mark.parametrize("gap, loss, pruned", [
    (0.005, 2.0, True),    # 0.25% of the loss
    (0.02, 2.0, False),    # exactly 1%: not below
    (0.001, 0.5, True),    # a loss under 1
    (0.0, 0.0, False),     # no loss: no ratio
    (math.nan, 1.0, False),
])
def test_inert_perturbation_below_the_share_of_the_loss(gap, loss, pruned):
    pruner = ForgettingPruner(inert_loss_gap=0.01)
    history = [{"flip_rate": 0.1}, {"flip_rate": 0.1, "loss_gap": gap, "train_loss": loss}]
    got, reason = _prune(pruner, history, params=SAM)
    assert got is pruned
    if pruned:
        assert reason == (f"inert perturbation: loss gap {gap:.2g} is {_percent_below(gap / loss)} "
                          f"of the training loss {loss:.3g} (< 1%) at epoch 2")


def test_the_inert_rule_is_off_at_zero_and_spares_obf():
    history = [{"flip_rate": 0.1}, {"flip_rate": 0.1, "loss_gap": -0.1, "train_loss": 1.0}]
    assert _prune(ForgettingPruner(inert_loss_gap=0.0), history, params=SAM)[0] is False
    assert _prune(ForgettingPruner(), history, params={"variant": "obf"})[0] is False
    assert _prune(ForgettingPruner(), history, params=SAM)[0] is True


def test_percent_below_rounds_down():
    assert _percent_below(0.009996) == "0.99%"
    assert _percent_below(0.12345) == "12.34%"
