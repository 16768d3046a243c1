"""The warm start survives interruptions and failures; a fallback baseline says it is one."""

from __future__ import annotations

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import samtune.search._objective as objective_module
from samtune.search import search

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _study(storage, name="tiny"):
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_or_failed_warm_start_trial_runs_again_on_resume(tiny, monkeypatch, error):
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
    trials = _study(tiny["storage"]).trials
    assert trials[0].state == TrialState.FAIL and trials[0].params == {"variant": "sgd", "lr": 0.05}
    rec = search("builtin:wine", **options)
    done = _study(tiny["storage"]).get_trials(states=FINISHED)
    assert {"variant": "sgd", "lr": 0.05} in [t.params for t in done]  # the baseline ran again
    assert rec.baseline.get("tuned") is True


def test_a_small_budget_leaves_no_enqueued_trial_waiting_and_a_top_up_runs_the_rest(tiny):
    search("builtin:wine", **{**tiny, "pruner": "none"})  # trials=3 of 4 warm starts
    study = _study(tiny["storage"])
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert [t.params["variant"] for t in study.trials] == ["sgd", "sam", "asam"]
    search("builtin:wine", **{**tiny, "pruner": "none", "trials": 4})
    study = _study(tiny["storage"])
    assert [t.params["variant"] for t in study.trials] == ["sgd", "sam", "asam", "obf"]
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_a_fallback_baseline_is_never_called_tuned(tiny, tmp_path):
    space = tmp_path / "sam-only.yaml"
    space.write_text(yaml.safe_dump({"variants": ["sam"], "m": [None],
                                     "rho": {"default": {"low": 0.01, "high": 0.1}}}))
    rec = search("builtin:wine", **{**tiny, "trials": 2, "space": str(space), "pruner": "none"})
    baseline = next(c for c in rec.candidates if c["config"]["variant"] == "sgd")
    assert baseline["trial"] is None and baseline["description"].startswith("untuned fallback baseline")
    assert rec.baseline["tuned"] is False
    assert "tuned baseline" not in rec.summary.replace("untuned", "")
    assert "untuned fallback baseline" in rec.summary
