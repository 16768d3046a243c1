"""Enqueued (warm-start) trials survive interruptions and failures; a fallback baseline says
it is one."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from torch import nn

import samtune.search._confirm as confirm_module
import samtune.search._objective as objective_module
from samtune.optim import SAMConfig
from samtune.search import search
from samtune.search._confirm import confirm, pick_candidates
from samtune.search._recommendation import build_recommendation
from samtune.train import TrainConfig

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _study(storage, name="tiny"):
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_or_failed_enqueued_trial_runs_again_on_resume(tiny, monkeypatch, error):
    real = objective_module.run_config
    calls = []

    def first_run_breaks(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error("stopped during trial 0")
        return real(*args, **kwargs)

    monkeypatch.setattr(objective_module, "run_config", first_run_breaks)
    options = {**tiny, "pruner": "none"}
    with pytest.raises(error):
        search("builtin:wine", **options)
    first = _study(tiny["storage"]).trials[0]
    assert first.state == TrialState.FAIL
    enqueued = first.system_attrs["fixed_params"]
    rec = search("builtin:wine", **options)
    done = _study(tiny["storage"]).get_trials(states=FINISHED)
    assert enqueued in [t.system_attrs.get("fixed_params") for t in done]  # it ran again
    assert any(t.user_attrs["config"]["variant"] == "sgd" for t in done)
    assert rec.baseline.get("tuned") is True


def test_a_small_budget_leaves_no_enqueued_trial_waiting_and_a_top_up_finishes(tiny):
    search("builtin:wine", **{**tiny, "pruner": "none"})  # trials=3, fewer than the warm starts
    study = _study(tiny["storage"])
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert len(study.get_trials(states=FINISHED)) == 3
    search("builtin:wine", **{**tiny, "pruner": "none", "trials": 5})
    study = _study(tiny["storage"])
    assert len(study.get_trials(states=FINISHED)) == 5
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_a_fallback_baseline_is_never_called_tuned(monkeypatch):
    """No baseline trial completed: the baseline confirmed is the best trial's optimizer at
    its lr, untuned, and every text says so."""
    sam = SAMConfig(variant="sam", rho=0.05, base_kwargs={"lr": 0.1})
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(
        value=0.9, params={"variant": "sam"},
        distributions={"variant": CategoricalDistribution(["sgd", "sam"])},
        user_attrs={"config": sam.to_dict()}))
    candidates = pick_candidates(study, 1, {"lr": 0.05})
    assert [(c.variant, t is None) for c, t in candidates] == [("sam", False), ("sgd", True)]

    def fake_run(config, data, train_config, factory, *, seed, callbacks):
        model = nn.Linear(2, 2)
        with torch.no_grad():
            model.weight.copy_(torch.eye(2) if config.variant == "sgd" else -torch.eye(2))
            model.bias.zero_()
        return SimpleNamespace(epochs_trained=1, diverged=False, model=model, step_time=1.0)

    monkeypatch.setattr(confirm_module, "run_config", fake_run)
    x = torch.eye(2).repeat(20, 1)
    data = SimpleNamespace(x_test=x, y_test=torch.arange(2).repeat(20))
    confirmed = confirm(candidates, data, TrainConfig(epochs=1, batch_size=8), None, seeds=1)
    baseline = confirmed[-1]
    assert baseline["description"].startswith("untuned fallback baseline") and not baseline["tuned"]
    rec = build_recommendation(study, confirmed, SimpleNamespace(describe=lambda: {}),
                               SimpleNamespace(epochs=1, batch_size=8), "mlp", "sqlite://", "x")
    assert rec.verdict == "keep-baseline" and rec.baseline["tuned"] is False
    assert "untuned fallback baseline" in rec.summary
    assert "tuned baseline" not in rec.summary.replace("untuned", "")
