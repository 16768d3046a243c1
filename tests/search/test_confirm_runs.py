"""``confirm``: each candidate retrained with its seeds, scored on the test split (tiny runs),
and ``pick_candidates`` telling configurations apart by content, not key order."""

from __future__ import annotations

import math
import statistics

import optuna
import pytest
import torch
from torch import nn

from samtune import SAMConfig
from samtune.data import from_arrays
from samtune.search import _confirm
from samtune.search._confirm import CONFIRM_SEED_OFFSET, FALLBACK, confirm, pick_candidates
from samtune.train import TrainConfig, TrainResult

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 4, generator=g)
    return from_arrays((x, (x[:, 0] + 0.3 * x[:, 1] > 0).long()), seed=0)


def factory():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _trial(config: SAMConfig, value: float):
    study = optuna.create_study(direction="maximize")
    t = study.ask()
    t.set_user_attr("config", config.to_dict())
    study.tell(t, value)
    return study.trials[0]


def test_each_candidate_runs_its_seeds_and_is_scored_on_the_test_split(data, monkeypatch):
    seeds_used, models = [], []
    real = _confirm.run_config

    def recording(config, d, train_config, model_factory, *, seed, callbacks=None):
        seeds_used.append(seed)
        result = real(config, d, train_config, model_factory, seed=seed, callbacks=callbacks)
        models.append(result.model)
        return result

    monkeypatch.setattr(_confirm, "run_config", recording)
    sam = SAMConfig(variant="sam", rho=0.05, base_kwargs={"lr": 0.1})
    base = SAMConfig(variant="sgd", rho=0.0, base_kwargs={"lr": 0.1})
    trial = _trial(sam, 0.75)
    runs = []
    out = confirm([(sam, trial), (base, None)], data, TrainConfig(epochs=2, batch_size=16), factory,
                  seeds=3, seed=4, on_run=lambda *a: runs.append(a))
    assert seeds_used == [CONFIRM_SEED_OFFSET + 4000 + s for s in range(3)] * 2
    assert [(d, t, c.variant, s) for d, t, c, s, _ in runs] == [
        (i + 1, 6, v, s) for i, (v, s) in enumerate((v, s) for v in ("sam", "sgd") for s in range(3))]
    for j, (c, (config, _trial_of_c)) in enumerate(zip(out, [(sam, trial), (base, None)])):
        accs = c["test_accuracy"]["per_seed"]
        assert len(accs) == 3 and [a for *_, a in runs[3 * j:3 * j + 3]] == accs
        for s, (acc, correct) in enumerate(zip(accs, c["correct"])):
            model = models[3 * j + s]
            with torch.no_grad():
                want = model.eval()(data.x_test).argmax(-1) == data.y_test
            assert torch.equal(correct, want) and acc == int(want.sum()) / len(want)
            assert torch.equal(c["pred"][s], model(data.x_test).argmax(-1))
        assert c["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(accs))
        assert c["test_accuracy"]["std"] == pytest.approx(statistics.stdev(accs))
        assert c["config"] == config.to_dict() and c["epochs"] == 6 and c["step_time"] > 0
    assert (out[0]["trial"], out[0]["val_accuracy"], out[0]["tuned"]) == (0, 0.75, True)
    assert out[0]["description"] == sam.describe()
    assert (out[1]["trial"], out[1]["val_accuracy"], out[1]["tuned"]) == (None, None, False)
    assert out[1]["description"] == f"{FALLBACK} {base.describe()}"
    assert (out[0]["val_metric"], out[1]["val_metric"]) == (0.75, None)
    assert all(c["seconds"] > 0 for c in out)


def test_a_runner_on_another_metric_scores_it_and_reads_the_trials_accuracy(data):
    from samtune.metrics import Metric

    metric = Metric("balanced_accuracy", 2)
    sam = SAMConfig(variant="sam", base_kwargs={"lr": 0.1})
    study = optuna.create_study(direction="maximize")
    t = study.ask()
    t.set_user_attr("final_val_acc", 0.61)
    study.tell(t, 0.55)  # the trial's value is its balanced accuracy
    runner = _confirm.Runner(data, TrainConfig(epochs=1, batch_size=16), factory, metric=metric)
    rec = runner.record(sam, study.trials[0])
    assert (rec["val_accuracy"], rec["val_metric"]) == (0.61, 0.55)
    acc = runner.add_seed(rec)
    assert acc == rec["test_accuracy"]["per_seed"][0] == rec["correct"][0].double().mean().item()
    score = metric.score(data.y_test, rec["pred"][0])
    assert rec["test_metric"]["per_seed"] == [score] and runner.last_score == score


def test_a_diverged_seed_scores_nan_and_is_left_out_of_the_mean(data, monkeypatch):
    calls = []
    real = _confirm.run_config

    def second_diverges(config, d, train_config, model_factory, *, seed, callbacks=None):
        calls.append(seed)
        if len(calls) == 2:
            return TrainResult(history=[], diverged=True, reason="boom", epochs_trained=1,
                               step_time=0.5)
        return real(config, d, train_config, model_factory, seed=seed, callbacks=callbacks)

    monkeypatch.setattr(_confirm, "run_config", second_diverges)
    sam = SAMConfig(variant="sam", base_kwargs={"lr": 0.1})
    [c] = confirm([(sam, _trial(sam, 0.5))], data, TrainConfig(epochs=1, batch_size=16), factory,
                  seeds=3)
    accs = c["test_accuracy"]["per_seed"]
    assert math.isnan(accs[1]) and len(c["correct"]) == 2
    assert c["test_accuracy"]["mean"] == pytest.approx(statistics.fmean([accs[0], accs[2]]))
    assert c["test_accuracy"]["std"] == pytest.approx(statistics.stdev([accs[0], accs[2]]))
    assert c["epochs"] == 1 + 1 + 1


def test_every_seed_diverged_scores_nan(data, monkeypatch):
    monkeypatch.setattr(_confirm, "run_config", lambda *a, **k: TrainResult(
        history=[], diverged=True, epochs_trained=1, step_time=0.1))
    sam = SAMConfig(variant="sam")
    [c] = confirm([(sam, None)], data, TrainConfig(epochs=1), factory, seeds=2)
    assert math.isnan(c["test_accuracy"]["mean"]) and c["test_accuracy"]["std"] == 0.0
    assert c["correct"] == [] and all(math.isnan(a) for a in c["test_accuracy"]["per_seed"])


def test_slow_epoch_lines_evaluation_settings_and_the_default_seed(data, monkeypatch):
    made, seen, evals = [], [], []
    real_run, real_predict = _confirm.run_config, _confirm.predict_classes

    class Recorder:
        def __init__(self, say, label, epochs):
            made.append((say, label, epochs))

    def run(config, d, train_config, model_factory, *, seed, callbacks=None):
        seen.append((seed, callbacks))
        return real_run(config, d, train_config, model_factory, seed=seed)

    def predict(*args, **kwargs):
        evals.append(kwargs)
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(_confirm, "EpochProgress", Recorder)
    monkeypatch.setattr(_confirm, "run_config", run)
    monkeypatch.setattr(_confirm, "predict_classes", predict)
    sam, base = SAMConfig(variant="sam"), SAMConfig(variant="sgd", rho=0.0)
    train = TrainConfig(epochs=1, batch_size=16, bf16=True, eval_batch_size=7)
    confirm([(sam, None), (base, None)], data, train, factory, seeds=2, say=print)
    assert made == [(print, f"confirm {i}/4", 1) for i in (1, 2, 3, 4)]
    assert [s for s, _ in seen] == [CONFIRM_SEED_OFFSET, CONFIRM_SEED_OFFSET + 1] * 2
    assert all(len(cbs) == 1 and isinstance(cbs[0], Recorder) for _, cbs in seen)
    assert evals == [{"batch_size": 7, "bf16": True}] * 8  # each seed: validation, then test
    seen.clear()
    confirm([(sam, None)], data, TrainConfig(epochs=1, batch_size=16), factory, seeds=1)
    assert seen == [(CONFIRM_SEED_OFFSET, [])]  # no say: no progress callback


def test_one_seed_has_no_spread_and_progress_lines_come_with_say(data):
    sam = SAMConfig(variant="sam", base_kwargs={"lr": 0.1})
    lines = []
    [c] = confirm([(sam, None)], data, TrainConfig(epochs=1, batch_size=16), factory, seeds=1,
                  say=lines.append)
    assert c["test_accuracy"]["std"] == 0.0 and c["tuned"] and c["description"] == sam.describe()


def test_the_same_configuration_in_another_key_order_is_one_candidate():
    study = optuna.create_study(direction="maximize")
    cfg = SAMConfig(variant="sam", rho=0.1, base_kwargs={"lr": 0.1}).to_dict()
    reordered = {k: cfg[k] for k in reversed(list(cfg))}
    reordered["base_kwargs"] = {k: cfg["base_kwargs"][k] for k in reversed(list(cfg["base_kwargs"]))}
    for config, value in ((cfg, 0.9), (reordered, 0.89),
                          (SAMConfig(variant="asam", rho=1.0).to_dict(), 0.8),
                          (SAMConfig(variant="sgd", rho=0.0).to_dict(), 0.7)):
        t = study.ask()
        t.set_user_attr("config", config)
        study.tell(t, value)
    assert [t.number for _, t in pick_candidates(study, 2, {"lr": 0.05})] == [0, 2, 3]


def test_on_folds_run_s_trains_and_tests_on_fold_s_for_every_configuration(data, monkeypatch):
    from samtune.search._confirm import Runner, settle

    trained, tested = [], []
    real = _confirm.run_config

    def recording(config, d, train_config, model_factory, *, seed, callbacks=None):
        trained.append((config.variant, len(d.y_train), d.x_test[:, 0].tolist()))
        result = real(config, d, train_config, model_factory, seed=seed, callbacks=callbacks)
        with torch.no_grad():
            tested.append(result.model.eval()(d.x_test).argmax(-1) == d.y_test)
        return result

    monkeypatch.setattr(_confirm, "run_config", recording)
    folds = data.folds
    sam = SAMConfig(variant="sam", rho=0.05, base_kwargs={"lr": 0.1})
    base = SAMConfig(variant="sgd", rho=0.0, base_kwargs={"lr": 0.1})
    runner = Runner(data, TrainConfig(epochs=1, batch_size=16), factory, folds=folds)
    out = confirm([(sam, None), (base, None)], data, runner.train_config, factory, seeds=2,
                  runner=runner)
    for c, offset in zip(out, (0, 2)):
        assert c["k"] == folds.k and len(c["fold_runs"]) == 2
        for s in range(2):
            _, rows = folds.indices(s)
            want = folds.x[rows][:, 0].tolist()
            assert trained[offset + s][2] == pytest.approx(want)  # tested on fold s
            assert torch.equal(c["fold_runs"][s], tested[offset + s].double())
            assert torch.equal(c["labels"][s], torch.as_tensor(folds.y[rows]))
    assert trained[0][2] == trained[2][2] and trained[1][2] == trained[3][2]  # same folds, paired
    assert trained[0][2] != trained[1][2]
    settle(out, runner, max_seeds=3, afford=lambda runs: True)
    n = len(out[0]["fold_runs"])
    assert n == len(out[1]["fold_runs"]) and n in (2, 3)
