"""The objective's rules: the trial's seed, the scalar summaries the dashboard plots, what the
reporter tells Optuna, the surplus and interrupt paths, and what a trial records around the
training run it hands to ``run_config``."""

from __future__ import annotations

import math
import socket
import warnings

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

import samtune.search._objective as objective_module
from samtune.errors import SamtuneError
from samtune.optim import SAMConfig
from samtune.search._objective import (
    Objective,
    OptunaReporter,
    TrialSurplus,
    _claims_before,
    _jsonable,
    model_factory_from,
    named_model_factory,
    run_config,
    summarize,
    trial_seed,
)
from samtune.search._space import SearchSpace
from samtune.search._stages import STAGE_ATTR, family_space
from samtune.train import TrainConfig, TrainResult


def _study(pruner=None) -> optuna.Study:
    return optuna.create_study(direction="maximize", pruner=pruner or optuna.pruners.NopPruner())


# -- the trial's seed -----------------------------------------------------------------------------


def test_trial_seed_is_the_search_seed_times_a_prime_plus_the_trial_number_mod_2_31():
    """A stored study's trials keep their seeds under a later version: pinned values."""
    assert trial_seed(0, 0) == 0 and trial_seed(0, 7) == 7
    assert trial_seed(1, 0) == 1_000_003
    assert trial_seed(3, 5) == 3_000_014
    assert trial_seed(5000, 11) == 705_047_715  # 5000 * 1_000_003 + 11 - 2 * 2**31
    assert trial_seed(2**31, 1) == 1  # the search seed wraps at 2**31


# -- the dashboard's scalars ----------------------------------------------------------------------


def _record(val_acc, val_loss, **signals):
    return {"val_acc": val_acc, "val_loss": val_loss, **signals}


def test_summarize_takes_early_from_the_second_epoch_and_means_over_the_epochs_that_have_a_signal():
    history = [_record(0.5, 1.2, flip_rate=0.4, loss_gap=0.3),
               _record(0.7, 0.9, flip_rate=0.2, loss_gap=0.1, p_drop=0.05),
               _record(0.6, 1.0, flip_rate=0.1, loss_gap=None)]
    out = summarize(history)
    assert out["final_val_acc"] == 0.6 and out["final_val_loss"] == 1.0
    assert out["best_val_acc"] == 0.7 and out["epochs_trained"] == 3.0
    assert out["early_flip_rate"] == 0.2 and out["early_loss_gap"] == 0.1
    assert out["early_p_drop"] == 0.05 and out["mean_p_drop"] == 0.05
    assert out["mean_flip_rate"] == pytest.approx((0.4 + 0.2 + 0.1) / 3)
    assert out["mean_loss_gap"] == pytest.approx(0.2)  # the epoch without it is left out
    assert "early_forgetting_rate" not in out and "mean_forgetting_rate" not in out
    assert all(isinstance(v, float) for v in out.values())


def test_summarize_of_one_epoch_takes_early_from_it_and_drops_non_finite_values():
    out = summarize([_record(0.4, math.inf, flip_rate=0.3, bias_clean=math.nan)])
    assert out["early_flip_rate"] == 0.3 and out["final_val_acc"] == 0.4
    assert "final_val_loss" not in out  # inf: no plottable scalar
    assert "early_bias_clean" not in out and "mean_bias_clean" not in out
    assert summarize([]) == {}


def test_jsonable_turns_non_finite_floats_into_none_and_leaves_the_rest():
    rows = _jsonable([{"a": math.nan, "b": -math.inf, "c": 0.25, "epoch": 3, "tag": "x"}])
    assert rows == [{"a": None, "b": None, "c": 0.25, "epoch": 3, "tag": "x"}]


# -- the reporter ---------------------------------------------------------------------------------


class _PruneFrom(optuna.pruners.BasePruner):
    """Prunes from ``step`` on, saying why through ``last_reason`` (as samtune's pruners do)."""

    def __init__(self, step: int, reason: str | None) -> None:
        self.step, self.last_reason = step, reason

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.step


@pytest.mark.parametrize("reason, expected", [("flat forgetting curve", "flat forgetting curve"),
                                              (None, "pruned at epoch 1")])
def test_the_reporter_reports_each_epoch_and_prunes_with_the_pruners_reason(reason, expected):
    study = _study(_PruneFrom(1, reason))
    trial = study.ask()
    reporter = OptunaReporter(trial)
    reporter.on_epoch_end(0, {"val_metric": 0.3, "val_acc": 0.3, "loss": math.nan})
    assert trial.user_attrs["history"] == [{"val_metric": 0.3, "val_acc": 0.3, "loss": None}]
    with pytest.raises(optuna.TrialPruned, match=expected):
        reporter.on_epoch_end(1, {"val_metric": 0.4, "val_acc": 0.41})
    frozen = study.trials[0]
    assert frozen.intermediate_values == {0: 0.3, 1: 0.4}  # val_metric, not val_acc
    assert frozen.user_attrs["prune_reason"] == expected
    assert len(frozen.user_attrs["history"]) == 2


# -- claims, surplus and interrupts ---------------------------------------------------------------


def test_claims_before_counts_the_finished_and_running_trials_numbered_before():
    study = _study()
    done = study.ask()
    study.tell(done, 0.5)  # 0: complete
    pruned = study.ask()
    study.tell(pruned, state=TrialState.PRUNED)  # 1: pruned
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)  # 2: failed, not a claim
    running = study.ask()  # 3: running
    study.enqueue_trial({"x": 1.0})  # 4: waiting, not a claim
    me = study.ask()  # takes the waiting trial 4
    later = study.ask()  # 5: running, but numbered after
    assert me.number == 4 and later.number == 5 and running.number == 3
    assert _claims_before(me) == 3
    assert _claims_before(done) == 0


def _objective(**kw) -> Objective:
    space = SearchSpace.load("quick")
    return Objective(data=None, space=space, train_config=TrainConfig(epochs=1),
                     model_factory=lambda: nn.Linear(2, 2), **kw)


def test_a_trial_beyond_the_target_fails_as_surplus_without_training(monkeypatch):
    monkeypatch.setattr(Objective, "_run", lambda self, trial: pytest.fail("trained a surplus trial"))
    study = _study()
    for _ in range(2):
        t = study.ask()
        study.tell(t, 0.5)
    trial = study.ask()
    with pytest.raises(TrialSurplus):
        _objective(target=2)(trial)
    assert trial.user_attrs["fail_reason"] == "surplus: the study already had 2 trials"
    assert "worker_host" not in trial.user_attrs  # refused before it claimed anything


def test_a_trial_within_the_target_records_its_worker_and_returns_the_runs_value(monkeypatch):
    monkeypatch.setattr(Objective, "_run", lambda self, trial: 0.75)
    study = _study()
    trial = study.ask()
    assert _objective(target=1)(trial) == 0.75
    assert trial.user_attrs["worker_pid"] > 0 and trial.user_attrs["worker_host"]


def test_ctrl_c_in_a_trial_says_how_to_resume_and_propagates(monkeypatch):
    def interrupted(self, trial):
        raise KeyboardInterrupt

    monkeypatch.setattr(Objective, "_run", interrupted)
    trial = _study().ask()
    with pytest.raises(KeyboardInterrupt):
        _objective()(trial)
    assert trial.user_attrs["fail_reason"] == "interrupted (Ctrl-C); rerun the command to resume"


# -- what a trial records around its training run -------------------------------------------------


class _FakeRun:
    """Stands in for ``run_config``: records its arguments, returns a set result."""

    def __init__(self, result: TrainResult) -> None:
        self.result, self.calls = result, []

    def __call__(self, config, data, train_config, factory, *, seed, callbacks, val_metric):
        self.calls.append(dict(config=config, seed=seed, callbacks=callbacks, val_metric=val_metric))
        return self.result


def _history(n=2):
    return [{"val_acc": 0.5 + 0.1 * i, "val_loss": 1.0 - 0.1 * i, "val_metric": 0.5 + 0.1 * i,
             "flip_rate": 0.1 * (i + 1)} for i in range(n)]


def _fake(**result) -> _FakeRun:
    return _FakeRun(TrainResult(**{"history": _history(), "steps": 10, "step_time": 0.002, **result}))


def _baseline_study(lr: float = 0.04) -> optuna.Study:
    """A study whose next trial is an enqueued baseline at ``lr``."""
    study = _study()
    study.enqueue_trial({"lr": lr})
    return study


def _run_one(monkeypatch, study, fake, **kw):
    monkeypatch.setattr(objective_module, "run_config", fake)
    trial = study.ask()
    _objective(**kw)(trial)
    return trial


def test_a_baseline_trial_trains_sgd_at_its_lr_with_the_trials_seed_and_records_it(monkeypatch):
    fake = _fake()
    monkeypatch.setattr(objective_module, "run_config", fake)
    trial = _baseline_study().ask()
    value = _objective(seed=3)(trial)
    assert value == fake.result.val_metric == pytest.approx(0.6)
    (call,) = fake.calls
    assert call["seed"] == trial_seed(3, trial.number)
    assert call["config"].variant == "sgd" and call["config"].base_kwargs["lr"] == 0.04
    assert call["val_metric"] is None  # accuracy: val_metric is val_acc itself
    assert isinstance(call["callbacks"][0], OptunaReporter) and len(call["callbacks"]) == 1
    attrs = trial.user_attrs
    assert attrs["stage"] == "baseline" and attrs["step_time"] == 0.002
    assert attrs["config"] == call["config"].to_dict()
    assert attrs["config_text"] == call["config"].describe()
    assert attrs["early_flip_rate"] == pytest.approx(0.2) and attrs["epochs_trained"] == 2.0
    assert attrs["cost"] == pytest.approx(1.0)  # a baseline trial is its own reference


def test_a_diverged_run_is_pruned_with_its_reason_and_keeps_its_summaries(monkeypatch):
    fake = _FakeRun(TrainResult(history=_history(1), diverged=True, reason="loss is nan at step 4",
                                steps=4, step_time=0.001))
    monkeypatch.setattr(objective_module, "run_config", fake)
    trial = _baseline_study().ask()
    with pytest.raises(optuna.TrialPruned, match="diverged: loss is nan at step 4"):
        _objective()(trial)
    assert trial.user_attrs["prune_reason"] == "diverged: loss is nan at step 4"
    assert trial.user_attrs["final_val_acc"] == 0.5


# -- run_config and the model factories -----------------------------------------------------------


def test_run_config_seeds_the_model_and_the_run_with_its_seed(monkeypatch):
    seen = []

    def fake_train(model, data, config, cfg, callbacks, val_metric=None):
        seen.append((model.weight.detach().clone(), cfg.seed, cfg.epochs, callbacks, val_metric))
        return TrainResult(history=[])

    monkeypatch.setattr(objective_module, "train", fake_train)
    config = SAMConfig(variant="sgd", rho=0.0, base_kwargs={"lr": 0.1})
    cfg = TrainConfig(epochs=3, seed=0)
    scorer = object()
    for seed in (11, 11, 12):
        run_config(config, None, cfg, lambda: nn.Linear(3, 2), seed=seed, callbacks=["cb"],
                   val_metric=scorer)
    (w1, s1, e1, cb, vm), (w2, s2, *_), (w3, s3, *_) = seen
    assert (s1, s2, s3) == (11, 11, 12) and e1 == 3 and cb == ["cb"] and vm is scorer
    assert torch.equal(w1, w2) and not torch.equal(w1, w3)  # the factory runs after seeding
    assert cfg.seed == 0  # the caller's config is not changed


def test_model_factory_from_returns_fresh_copies_with_the_models_initial_weights():
    model = nn.Linear(3, 2)
    initial = model.weight.detach().clone()
    make = model_factory_from(model)
    with torch.no_grad():
        model.weight.add_(1.0)  # the user's model trains on afterwards
    a, b = make(), make()
    assert a is not model and a is not b
    assert torch.equal(a.weight, initial) and torch.equal(b.weight, initial)
    with torch.no_grad():
        a.weight.zero_()
    assert torch.equal(b.weight, initial)  # copies share nothing


def test_named_model_factory_refuses_a_bad_name_before_any_trial():
    data = type("D", (), {"input_shape": (4,), "num_classes": 3})()
    with pytest.raises(SamtuneError):
        named_model_factory("no-such-model", data)
    make = named_model_factory(None, data)
    m1, m2 = make(), make()
    assert m1 is not m2 and m1(torch.zeros(2, 4)).shape == (2, 3)


# -- from the mutation run: what the first tests let through --------------------------------------


def test_a_pruner_without_a_reason_gives_the_epoch():
    """Optuna's own pruners have no ``last_reason``: the reason is the epoch."""

    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return True

    trial = _study(Always()).ask()
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 0"):
        OptunaReporter(trial).on_epoch_end(0, {"val_metric": 0.3})
    assert trial.user_attrs["prune_reason"] == "pruned at epoch 0"


def test_the_surplus_exception_carries_the_trial_number():
    study = _study()
    study.tell(study.ask(), 0.5)
    trial = study.ask()
    with pytest.raises(TrialSurplus) as err:
        _objective(target=1)(trial)
    assert err.value.args == (trial.number,) == (1,)


@pytest.mark.parametrize("target, expected", [(7, 7), (None, 10**9)])
def test_advance_stage_passes_the_target_and_says_what_moved(monkeypatch, target, expected):
    calls, said = [], []
    monkeypatch.setattr(objective_module, "advance",
                        lambda study, space, n: calls.append(n) or ("moved" if len(calls) == 1 else None))
    objective = _objective(target=target, say=said.append)
    objective.advance_stage(_study(), None)
    objective.advance_stage(_study(), None)  # nothing moved: nothing said
    assert calls == [expected, expected] and said == ["moved"]
    _objective(target=target).advance_stage(_study(), None)  # no say: no line, no error


def test_an_edge_extension_beyond_the_lr_range_runs_at_its_lr_in_a_widened_range(monkeypatch):
    """The baseline's edge step (lr 0.5, beyond quick's 0.01-0.2) is suggested from a range
    that holds it, so Optuna neither warns nor records an lr outside its distribution."""
    study = _baseline_study(0.5)
    fake = _fake()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run_one(monkeypatch, study, fake)
    assert fake.calls[0]["config"].base_kwargs["lr"] == 0.5
    assert study.trials[0].distributions["lr"].high == 0.5


def _family_study(space: SearchSpace) -> optuna.Study:
    study = _study()
    study.set_user_attr(STAGE_ATTR, {"stage": "family", "space": family_space(space, 0.05).to_dict()})
    return study


def test_an_enqueued_baseline_runs_as_one_after_the_stage_moved_on(monkeypatch):
    study = _family_study(SearchSpace.load("quick"))
    study.enqueue_trial({"lr": 0.04})  # e.g. a second baseline enqueued late
    fake = _fake()
    trial = _run_one(monkeypatch, study, fake)
    assert trial.user_attrs["stage"] == "baseline" and fake.calls[0]["config"].variant == "sgd"


def test_a_family_trial_enqueued_under_a_cheap_schedule_runs_under_it(monkeypatch):
    study = _family_study(SearchSpace.load("quick"))
    study.enqueue_trial({"variant": "sam", "rho": 0.05, "lr": 0.05, "m": None,
                         "schedule": "constant", "perturb": "late:start=0.5"})
    fake = _fake(perturbed_steps=5, step_time=0.004)
    trial = _run_one(monkeypatch, study, fake)
    config = fake.calls[0]["config"]
    assert trial.user_attrs["stage"] == "family"
    assert (config.variant, config.perturb, config.perturb_kwargs) == ("sam", "late", {"start": 0.5})
    assert trial.user_attrs["perturbed_share"] == 0.5


def test_a_trials_cost_is_over_the_baselines_of_its_own_host(monkeypatch):
    """Step times from another machine are no reference while this one ran a baseline."""
    study = _family_study(SearchSpace.load("quick"))
    for host, step in (("elsewhere", 0.010), (socket.gethostname(), 0.002)):
        study.add_trial(optuna.trial.create_trial(
            value=0.5, params={"lr": 0.05},
            distributions={"lr": optuna.distributions.FloatDistribution(0.01, 0.2, log=True)},
            user_attrs={"config": {"variant": "sgd"}, "stage": "baseline", "step_time": step,
                        "worker_host": host}))
    study.enqueue_trial({"variant": "sam", "rho": 0.05, "lr": 0.05, "m": None, "schedule": "constant"})
    fake = _fake(step_time=0.005)
    trial = _run_one(monkeypatch, study, fake)
    assert trial.user_attrs["cost"] == pytest.approx(2.5)  # 0.005 / 0.002, not / the median 0.006


def test_a_search_for_another_metric_scores_validation_with_its_utility(monkeypatch):
    from samtune.metrics import parse_metric

    metric = parse_metric("macro_f1", ["a", "b", "c"])
    fake = _fake()
    _run_one(monkeypatch, _baseline_study(), fake, metric=metric)
    assert fake.calls[0]["val_metric"] == metric.utility


def test_progress_lines_add_an_epoch_progress_callback_naming_the_trial_and_its_epochs(monkeypatch):
    said = []
    fake = _fake()
    _run_one(monkeypatch, _baseline_study(), fake, say=said.append)
    kinds = [type(c).__name__ for c in fake.calls[0]["callbacks"]]
    assert kinds == ["OptunaReporter", "EpochProgress"]
    progress = fake.calls[0]["callbacks"][1]
    assert (progress.say, progress.what, progress.epochs) == (said.append, "trial 0", 1)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_trial_on_a_heartbeat_storage_records_its_first_heartbeat_before_training(tmp_path, monkeypatch):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'hb.db'}", heartbeat_interval=60)
    study = optuna.create_study(storage=storage, direction="maximize")
    beats = []
    monkeypatch.setattr(storage, "record_heartbeat", beats.append)
    monkeypatch.setattr(Objective, "_run", lambda self, trial: beats.append("trained") or 0.5)
    trial = study.ask()
    _objective()(trial)
    assert beats == [trial._trial_id, "trained"]


def test_named_model_factory_builds_the_model_it_was_named():
    from samtune.models import build_model

    data = type("D", (), {"input_shape": (1, 8, 8), "num_classes": 3})()
    made = named_model_factory("mlp", data)()
    assert type(made) is type(build_model("mlp", (1, 8, 8), 3))
    assert sum(p.numel() for p in made.parameters()) != sum(
        p.numel() for p in build_model(None, (1, 8, 8), 3).parameters())
