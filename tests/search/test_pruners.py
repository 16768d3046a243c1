"""Pruner tests: no training, studies driven through ask / set_user_attr / report / tell."""

from __future__ import annotations

import math

import optuna
import pytest

from samtune.errors import ConfigError
from samtune.search._forgetting_pruner import ForgettingPruner, Prediction
from samtune.search._pruners import PRUNERS, make_pruner

VARIANTS = ("sgd", "sam", "asam", "gsam", "obf", "randsam", "gsam-obf", "asam-obf")


def _history(early: float, *, sam: bool, flip: float = 0.05, epochs: int = 3) -> list[dict]:
    """Per-epoch records whose epoch-2 val_acc is ``early`` (climbing 0.05 an epoch)."""
    history = []
    for epoch in range(1, epochs + 1):
        val_acc = early + 0.05 * (epoch - 2)
        record = {
            "epoch": epoch,
            "val_acc": val_acc,
            "val_loss": 2.0 - val_acc,
            "train_loss": 1.8 - val_acc,
            "train_acc": val_acc + 0.02 * epoch,
            "forgetting_rate": 0.1,
            "bias_clean": 0.01,
        }
        if sam:
            record |= {
                "flip_rate": flip,
                "loss_gap": 0.05 + 0.5 * flip,  # a few % of the training loss: not inert
                "p_drop": 0.02,
                "bias_perturbed": 0.02,
            }
        history.append(record)
    return history


def _run(study: optuna.Study, variant: str, history: list[dict]) -> optuna.Trial:
    """Report ``history`` epoch by epoch as the objective does; return the running trial."""
    study.enqueue_trial({"variant": variant})
    trial = study.ask()
    trial.suggest_categorical("variant", VARIANTS)
    for record in history:
        trial.set_user_attr("history", history[: record["epoch"]])
        trial.report(record["val_acc"], step=record["epoch"])
    return trial


def _complete(study: optuna.Study, variant: str, history: list[dict], final: float) -> None:
    study.tell(_run(study, variant, history), final)


def _truth(early: float, *, sam: bool, flip: float = 0.0) -> float:
    """The crafted relation: SAM starts lower but ends higher, less so the more it flips."""
    return 0.40 + 0.60 * early + (0.25 - flip if sam else 0.0)


# (early val_acc, flip rate) of the completed trials: SGD starts high, SAM starts low.
SGD_RUNS = [(0.60, 0.0), (0.65, 0.0), (0.70, 0.0), (0.75, 0.0), (0.80, 0.0)]
SAM_RUNS = [(0.40, 0.02), (0.45, 0.06), (0.50, 0.03), (0.55, 0.08), (0.60, 0.04)]


def _fitted_study(pruner: optuna.pruners.BasePruner) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for sam, runs in ((False, SGD_RUNS), (True, SAM_RUNS)):
        for early, flip in runs:
            final = _truth(early, sam=sam, flip=flip)
            _complete(study, "sam" if sam else "sgd", _history(early, sam=sam, flip=flip), final)
    return study


def _prunes(study: optuna.Study, variant: str, history: list[dict]) -> bool:
    return _run(study, variant, history).should_prune()


@pytest.mark.parametrize(
    "bad", [{"val_loss": math.inf}, {"train_loss": math.nan}, {"val_acc": math.nan}]
)
def test_divergence_pruned_at_once_even_during_startup(bad: dict) -> None:
    pruner = ForgettingPruner()
    study = optuna.create_study(direction="maximize", pruner=pruner)
    history = [_history(0.5, sam=True)[0] | bad]
    assert _prunes(study, "sam", history)
    assert pruner.last_reason is not None and pruner.last_reason.startswith("diverged: ")


def test_collapse_pruned_from_epoch_two() -> None:
    pruner = ForgettingPruner()
    study = optuna.create_study(direction="maximize", pruner=pruner)
    history = _history(0.3, sam=True, flip=0.8, epochs=2)
    trial = _run(study, "sam", history[:1])
    assert not trial.should_prune()
    assert pruner.last_reason is None
    trial.set_user_attr("history", history)
    trial.report(history[1]["val_acc"], step=2)
    assert trial.should_prune()
    assert pruner.last_reason == "collapsed perturbation: flip rate 0.800 at epoch 2"
    assert pruner.reason_for(trial.number) == pruner.last_reason


def test_nothing_pruned_before_startup_trials_complete() -> None:
    study = optuna.create_study(direction="maximize", pruner=ForgettingPruner(n_startup_trials=5))
    for early, _ in SGD_RUNS[:4]:
        _complete(study, "sgd", _history(early, sam=False), _truth(early, sam=False))
    assert not _prunes(study, "sgd", _history(0.05, sam=False))
    _complete(study, "sgd", _history(0.8, sam=False), _truth(0.8, sam=False))
    assert _prunes(study, "sgd", _history(0.05, sam=False))


def test_inert_perturbation_pruned_once_past_warmup_even_during_startup() -> None:
    pruner = ForgettingPruner()
    study = optuna.create_study(direction="maximize", pruner=pruner)
    history = _history(0.5, sam=True, flip=0.0, epochs=2)
    for record in history:
        record["loss_gap"] = 0.001 * record["train_loss"]  # 0.1% of the loss: changes nothing
    trial = _run(study, "randsam", history[:1])
    assert not trial.should_prune()  # epoch 1 is the learning-rate warm-up
    trial.set_user_attr("history", history)
    trial.report(history[1]["val_acc"], step=2)
    assert trial.should_prune()
    assert pruner.last_reason is not None
    assert pruner.last_reason.startswith("inert perturbation: loss gap 0.0013 is 0.10% of")


def test_inert_rule_spares_real_perturbations_and_the_baseline() -> None:
    study = optuna.create_study(direction="maximize", pruner=ForgettingPruner())
    assert not _prunes(study, "sam", _history(0.5, sam=True, flip=0.02, epochs=2))
    assert not _prunes(study, "sgd", _history(0.5, sam=False, epochs=2))
    off = optuna.create_study(direction="maximize", pruner=ForgettingPruner(inert_loss_gap=0.0))
    history = _history(0.5, sam=True, flip=0.0, epochs=2)
    history[1]["loss_gap"] = 0.0
    assert not _prunes(off, "randsam", history)


def test_no_prediction_without_enough_completed_records() -> None:
    pruner = ForgettingPruner(n_startup_trials=0)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for early in (0.7, 0.8):
        _complete(study, "sgd", _history(early, sam=False), _truth(early, sam=False))
    assert not _prunes(study, "sgd", _history(0.05, sam=False, epochs=2))  # 2 < 3 to fit
    _complete(study, "sgd", _history(0.75, sam=False), _truth(0.75, sam=False))
    assert _prunes(study, "sgd", _history(0.05, sam=False, epochs=2))


def test_low_prediction_pruned_high_prediction_kept() -> None:
    pruner = ForgettingPruner(n_startup_trials=5, n_warmup_steps=1)
    study = _fitted_study(pruner)
    assert _prunes(study, "sgd", _history(0.50, sam=False, epochs=2))
    assert pruner.last_reason is not None and pruner.last_reason.startswith(
        "unlikely to be confirmed: P(final val_acc >= 0.880) = 0.09 < 0.5 at epoch 2 "
        "(0.880 is the bar to be confirmed; predicted"
    )
    assert _prunes(study, "sam", _history(0.45, sam=True, flip=0.35, epochs=2))
    assert not _prunes(study, "sgd", _history(0.90, sam=False, epochs=2))
    assert not _prunes(study, "sam", _history(0.60, sam=True, flip=0.02, epochs=2))


def test_the_bar_is_the_top_k_th_final_or_for_a_baseline_the_best_baseline() -> None:
    """Finals: SAM 0.97, 0.92, ...; best baseline 0.88. The same predicted ~0.89 keeps a
    baseline (it would become the confirmed baseline) and prunes a SAM trial (not top 2)."""
    pruner = ForgettingPruner(n_startup_trials=5, n_warmup_steps=1)
    study = _fitted_study(pruner)
    for variant, early, flip, bar, pruned in (("sgd", 0.90, 0.0, 0.88, False),
                                              ("sam", 0.55, 0.08, 0.92, True)):
        trial = _run(study, variant, _history(early, sam=variant != "sgd", flip=flip, epochs=2))
        result = pruner.predict(study, study._storage.get_trial(trial._trial_id))
        assert result is not None
        assert result.bar == pytest.approx(bar)
        assert result.predicted == pytest.approx(0.89, abs=0.005)
        assert trial.should_prune() is pruned
    loose = _fitted_study(ForgettingPruner(n_startup_trials=5, n_warmup_steps=1, top_k=4))
    assert not _prunes(loose, "sam", _history(0.55, sam=True, flip=0.08, epochs=2))  # 4th: 0.88


def test_slow_starting_sam_kept_where_median_pruner_kills_it() -> None:
    """The product's claim in miniature: early accuracy alone kills a SAM trial that wins."""
    history = _history(0.55, sam=True, flip=0.02, epochs=2)
    assert _truth(0.55, sam=True, flip=0.02) > max(
        _truth(e, sam=False) for e, _ in SGD_RUNS
    )  # it would have beaten every baseline
    median_study = _fitted_study(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    assert _prunes(median_study, "sam", history)
    forgetting_study = _fitted_study(ForgettingPruner(n_startup_trials=5, n_warmup_steps=1))
    assert not _prunes(forgetting_study, "sam", history)


@pytest.mark.parametrize(
    ("variant", "early", "flip"), [("sam", 0.5, 0.02), ("sgd", 0.68, 0.0), ("sam", 0.58, 0.07)]
)
def test_predict_follows_the_crafted_relation(variant: str, early: float, flip: float) -> None:
    pruner = ForgettingPruner(n_startup_trials=5, n_warmup_steps=1)
    study = _fitted_study(pruner)
    sam = variant != "sgd"
    trial = _run(study, variant, _history(early, sam=sam, flip=flip, epochs=2))
    result = pruner.predict(study, study._storage.get_trial(trial._trial_id))
    assert result is not None
    finals = [t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert result.predicted == pytest.approx(_truth(early, sam=sam, flip=flip), abs=0.03)
    best_baseline = max(_truth(e, sam=False) for e, _ in SGD_RUNS)
    top2 = sorted(finals)[-2]
    assert result.bar == pytest.approx(min(top2, best_baseline) if variant == "sgd" else top2)
    assert result.n_completed == len(finals) == 10
    assert 1 / 11 <= result.probability <= 1.0


def test_probability_is_the_share_of_jackknife_values_reaching_the_bar() -> None:
    """(hits + 1) / (n + 1): 1 far above the bar, 1 / (n + 1) far below it."""
    pruner = ForgettingPruner(n_startup_trials=5, n_warmup_steps=1)
    study = _fitted_study(pruner)
    for variant, early, expected in (("sam", 0.62, 1.0), ("sgd", 0.50, 1 / 11)):
        sam = variant != "sgd"
        trial = _run(study, variant, _history(early, sam=sam, flip=0.02, epochs=2))
        result = pruner.predict(study, study._storage.get_trial(trial._trial_id))
        assert result is not None and result.probability == pytest.approx(expected)


def test_losses_beyond_the_fitted_range_are_clipped_accuracies_are_not() -> None:
    """A linear model is not trusted past the losses it has seen (an early val_loss of 5 can
    come from a high learning rate that ends well); accuracies are bounded and kept."""
    pruner = ForgettingPruner(n_startup_trials=5, n_warmup_steps=1)
    study = _fitted_study(pruner)

    def predicted(early: float, val_loss: float | None = None) -> float:
        history = _history(early, sam=False, epochs=2)
        if val_loss is not None:
            history[1]["val_loss"] = val_loss
        trial = _run(study, "sgd", history)
        result = pruner.predict(study, study._storage.get_trial(trial._trial_id))
        assert result is not None
        return result.predicted

    edge = predicted(0.7, val_loss=1.6)  # 1.6 is the highest epoch-2 val_loss seen
    assert predicted(0.7, val_loss=5.0) == pytest.approx(edge)
    assert predicted(0.7, val_loss=50.0) == pytest.approx(edge)
    assert predicted(0.05) < predicted(0.40) - 0.05  # 0.40: the lowest val_acc seen


def test_make_pruner_forgetting_predicts_from_warmup_to_half_the_budget() -> None:
    """Epoch 1 is the learning-rate warm-up: only a hopeless trial is pruned there; after half
    the budget a stop saves too little."""
    study = _fitted_study(make_pruner("forgetting", epochs=4))
    assert _prunes(study, "sgd", _history(0.05, sam=False, epochs=1))  # chance 1/11: its floor
    history = _history(0.75, sam=False, epochs=3)  # chance 2/11: unlikely, not hopeless
    trial = _run(study, "sgd", history[:1])
    assert not trial.should_prune()
    trial.set_user_attr("history", history[:2])
    trial.report(history[1]["val_acc"], step=2)
    assert trial.should_prune()
    late = _run(study, "sgd", history)  # first checked at epoch 3 > 4 // 2
    assert not late.should_prune()


def test_floor_is_one_over_completed_plus_one() -> None:
    assert Prediction(0.8, 0.9, 0.25, n_completed=3).floor == 0.25
    assert Prediction(0.8, 0.9, 0.5, n_completed=10).floor == pytest.approx(1 / 11)


def test_hopeless_pruned_during_warmup_merely_unlikely_waits_for_it() -> None:
    """Fitted on 10 trials: early 0.50 gives the floor 1/11 (no completed trial's error
    reaches the bar 0.88), early 0.75 gives 2/11 (one does): pruned at epoch 1 vs epoch 3."""
    pruner = ForgettingPruner(n_startup_trials=5, n_warmup_steps=3)
    study = _fitted_study(pruner)
    assert _prunes(study, "sgd", _history(0.50, sam=False, epochs=1))
    assert pruner.last_reason is not None and pruner.last_reason.startswith(
        "hopeless in the warm-up: P(final val_acc >= 0.880) = 0.09, its floor, at epoch 1 "
        "(0.880 is the bar to be confirmed; predicted 0.749 from 10 completed)"
    )
    history = _history(0.75, sam=False, epochs=3)
    for epoch in (1, 2):
        assert not _prunes(study, "sgd", history[:epoch])
        assert pruner.last_reason is None
    assert _prunes(study, "sgd", history)
    assert pruner.last_reason is not None and pruner.last_reason.startswith(
        "unlikely to be confirmed: P(final val_acc >= 0.880) = 0.18 < 0.5 at epoch 3"
    )


def test_hopeless_in_warmup_off_keeps_every_trial_through_the_warmup() -> None:
    study = _fitted_study(ForgettingPruner(n_startup_trials=5, n_warmup_steps=3,
                                           hopeless_in_warmup=False))
    history = _history(0.50, sam=False, epochs=3)
    assert not _prunes(study, "sgd", history[:1])
    assert not _prunes(study, "sgd", history[:2])
    assert _prunes(study, "sgd", history)


def test_warmup_rule_is_never_looser_than_min_probability() -> None:
    """With min_probability 0.05 < the floor 1/11, nothing is pruned, during warm-up or after."""
    study = _fitted_study(ForgettingPruner(n_startup_trials=5, n_warmup_steps=3,
                                           min_probability=0.05))
    history = _history(0.05, sam=False, epochs=3)
    assert not any(_prunes(study, "sgd", history[:epoch]) for epoch in (1, 2, 3))


def test_default_startup_is_three_where_the_jackknife_needs_all_three_to_miss() -> None:
    """Completed finals 0.76, 0.83 (+0.01 off the relation), 0.88: bar 0.83. With 3 completed
    the chance is 0.25 (the floor: none of 3 reaches the bar) or at least 0.5: early 0.50 is
    pruned (0.25), early 0.72 kept (0.75). With 2 completed nothing is predicted."""
    pruner = ForgettingPruner(n_warmup_steps=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for early in (0.6, 0.8):
        _complete(study, "sgd", _history(early, sam=False), _truth(early, sam=False))
    assert not _prunes(study, "sgd", _history(0.50, sam=False, epochs=2))
    _complete(study, "sgd", _history(0.7, sam=False), _truth(0.7, sam=False) + 0.01)
    assert _prunes(study, "sgd", _history(0.50, sam=False, epochs=2))
    assert pruner.last_reason is not None and " = 0.25 < 0.5 " in pruner.last_reason
    assert not _prunes(study, "sgd", _history(0.72, sam=False, epochs=2))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("forgetting", ForgettingPruner),
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_make_pruner_by_name(name: str, kind: type) -> None:
    assert name in PRUNERS
    assert isinstance(make_pruner(name, epochs=20, seed=0), kind)


def test_make_pruner_passes_the_searchs_top_k() -> None:
    study = _fitted_study(make_pruner("forgetting", epochs=4, top_k=4))
    assert not _prunes(study, "sam", _history(0.55, sam=True, flip=0.08, epochs=2))
    study = _fitted_study(make_pruner("forgetting", epochs=4))
    assert _prunes(study, "sam", _history(0.55, sam=True, flip=0.08, epochs=2))


def test_make_pruner_rejects_unknown_name_in_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        make_pruner("asha", epochs=10)
    message = str(info.value)
    assert "\n" not in message and "'asha'" in message
    assert all(name in message for name in PRUNERS)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_startup_trials": -1},
        {"n_warmup_steps": -1},
        {"n_steps": 0},
        {"collapse_flip_rate": 0.0},
        {"collapse_flip_rate": 1.5},
        {"inert_loss_gap": -0.01},
        {"inert_loss_gap": 1.0},
        {"top_k": 0},
        {"min_probability": 0.0},
        {"min_probability": 1.5},
        {"min_probability": math.nan},
        {"ridge_alpha": 0.0},
    ],
)
def test_bad_constructor_args_raise(kwargs: dict) -> None:
    ((key, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"but got {key}="):
        ForgettingPruner(**kwargs)


def test_obf_family_is_never_judged_inert_by_its_loss_gap() -> None:
    """OBF aims at output biases, not at the loss: a loss gap of 0.1% says nothing about it."""
    for variant, pruned in (("obf", False), ("gsam-obf", False), ("asam-obf", False),
                            ("randsam", True), ("sam", True)):
        study = optuna.create_study(direction="maximize", pruner=ForgettingPruner())
        history = _history(0.5, sam=True, flip=0.0, epochs=2)
        for record in history:
            record["loss_gap"] = 0.001 * record["train_loss"]
        assert _prunes(study, variant, history) is pruned, variant


def test_a_sam_trials_bar_is_the_top_k_th_sam_final_not_the_baselines() -> None:
    """Baselines end at 0.95 and 0.94, SAM trials at 0.80, 0.78, 0.76: a SAM trial matters
    when it can enter the top 2 SAM-family configurations (confirmed besides the baseline)."""
    pruner = ForgettingPruner(n_startup_trials=3, n_warmup_steps=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for early, final in ((0.80, 0.95), (0.78, 0.94)):
        _complete(study, "sgd", _history(early, sam=False), final)
    for early, final in ((0.50, 0.80), (0.48, 0.78), (0.46, 0.76)):
        _complete(study, "sam", _history(early, sam=True, flip=0.02), final)
    trial = _run(study, "sam", _history(0.49, sam=True, flip=0.02, epochs=2))
    result = pruner.predict(study, study._storage.get_trial(trial._trial_id))
    assert result is not None and result.bar == pytest.approx(0.78)
    assert not trial.should_prune()  # predicted near 0.79: it can join the top two SAM trials
    base = _run(study, "sgd", _history(0.60, sam=False, epochs=2))
    assert pruner.predict(study, study._storage.get_trial(base._trial_id)).bar == pytest.approx(0.94)


def test_sam_trials_wait_for_completed_sam_trials_before_the_predictor_judges_them() -> None:
    """Fitted on baselines alone, the predictor has never seen SAM's slower start."""
    pruner = ForgettingPruner(n_startup_trials=3, n_warmup_steps=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for early, _ in SGD_RUNS:
        _complete(study, "sgd", _history(early, sam=False), _truth(early, sam=False))
    slow = _history(0.40, sam=True, flip=0.02, epochs=2)
    assert not _prunes(study, "sam", slow)
    assert _prunes(study, "sgd", _history(0.40, sam=False, epochs=2))  # a baseline is judged
    for early, flip in SAM_RUNS[:3]:
        _complete(study, "sam", _history(early, sam=True, flip=flip), 0.70 + early / 10)
    assert _prunes(study, "sam", _history(0.10, sam=True, flip=0.02, epochs=2))


def test_the_bar_is_lowered_by_the_validation_noise_when_the_split_size_is_known() -> None:
    """A final measured on n validation examples is known to about sqrt(p (1 - p) / n)."""
    plain = ForgettingPruner(n_startup_trials=5, n_warmup_steps=1)
    noisy = ForgettingPruner(n_startup_trials=5, n_warmup_steps=1, val_size=100, val_noise_z=2.0)
    bars = []
    for pruner in (plain, noisy):
        study = _fitted_study(pruner)
        trial = _run(study, "sgd", _history(0.90, sam=False, epochs=2))
        bars.append(pruner.predict(study, study._storage.get_trial(trial._trial_id)).bar)
    assert bars[0] == pytest.approx(0.88)
    assert bars[1] == pytest.approx(0.88 - 2.0 * (0.88 * 0.12 / 100) ** 0.5)


def test_make_pruner_forgetting_is_conservative_and_knows_the_validation_size() -> None:
    pruner = make_pruner("forgetting", epochs=20, val_size=450)
    assert pruner._min_probability == 0.2 and pruner._val_size == 450
    assert pruner._val_noise_z == 2.0
