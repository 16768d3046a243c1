"""End to end: search, resume, refusal, the recommendation files."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from samtune import SAMConfig
from samtune.errors import SamtuneError
from samtune.search import Recommendation, search, stored_recommendation

SCHEMA = {
    "verdict": str, "config": dict, "test_accuracy": dict, "baseline": dict, "gain": float,
    "cost_multiplier": float, "dataset": dict, "study": dict, "compute": dict,
    "samtune_version": str, "summary": str, "candidates": list, "train": dict, "frontier": list,
    "best": dict, "left_out": dict,
}


def _study(storage, name="tiny"):
    return optuna.load_study(study_name=name, storage=storage)


def test_search_end_to_end_writes_a_recommendation_matching_the_schema(tiny, tmp_path):
    rec = search("builtin:wine", **tiny)
    on_disk = json.loads((tmp_path / "out" / "recommendation.json").read_text())
    assert yaml.safe_load((tmp_path / "out" / "recommendation.yaml").read_text()) == on_disk
    for key, kind in SCHEMA.items():
        assert isinstance(on_disk[key], kind), key
    assert on_disk["verdict"] in ("use", "keep-baseline")
    assert SAMConfig.from_dict(on_disk["config"]) == rec.config
    acc = on_disk["test_accuracy"]
    assert len(acc["per_seed"]) == 2 and min(acc["per_seed"]) <= acc["mean"] <= max(acc["per_seed"])
    assert on_disk["baseline"]["config"]["variant"] == "sgd"
    assert set(on_disk["baseline"]["test_accuracy"]) == {"mean", "std", "per_seed"}
    assert on_disk["dataset"]["fingerprint"] and on_disk["dataset"]["split_sizes"]["test"] > 0
    assert on_disk["study"]["n_complete"] + on_disk["study"]["n_pruned"] == 3
    # every epoch trained is counted: 3 trials and (candidates x 2 seeds) confirmation runs
    assert on_disk["compute"]["epochs"] == on_disk["compute"]["search_epochs"] + on_disk["compute"]["confirmation_epochs"]
    assert on_disk["compute"]["confirmation_epochs"] == 2 * 2 * len(on_disk["candidates"])
    if on_disk["verdict"] == "keep-baseline":
        assert on_disk["config"]["variant"] == "sgd"
    # the study stores the same recommendation
    assert stored_recommendation("tiny", tiny["storage"]).to_dict() == on_disk
    assert Recommendation.load(tmp_path / "out" / "recommendation.yaml").to_dict() == on_disk


def test_trials_carry_config_history_and_plottable_metrics(tiny):
    search("builtin:wine", **tiny)
    study = _study(tiny["storage"])
    first = study.trials[0]
    # the baseline comes first (3 trials: one baseline lr, the middle of the space's range),
    # then the SAM family's warm starts at the tuned lr
    middle = (0.01 * 0.2) ** 0.5  # the quick space's lr range, 0.01-0.2
    assert first.params == {"lr": pytest.approx(middle, rel=1e-2)}
    assert first.user_attrs["stage"] == "baseline"
    assert first.user_attrs["config"]["variant"] == "sgd"
    assert study.trials[1].params == {"variant": "sam", "rho": 0.05, "lr": first.params["lr"],
                                      "schedule": "constant", "m": None}
    assert study.trials[1].user_attrs["stage"] == "family"
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert SAMConfig.from_dict(t.user_attrs["config"]).variant == t.params.get("variant", "sgd")
        assert len(t.user_attrs["history"]) == 2
        assert t.user_attrs["final_val_acc"] == pytest.approx(t.value)
        assert t.user_attrs["step_time"] > 0
        if t.params.get("variant", "sgd") != "sgd":
            assert 0 <= t.user_attrs["early_flip_rate"] <= 1
        else:
            assert "early_flip_rate" not in t.user_attrs
        assert list(t.intermediate_values) == [1, 2]


def test_rerun_resumes_and_tops_up(tiny):
    search("builtin:wine", **tiny)
    search("builtin:wine", **{**tiny, "trials": 5})
    finished = _study(tiny["storage"]).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 5


@pytest.mark.parametrize("change, needle", [
    ({"data": "builtin:breast_cancer"}, "different data"),
    ({"space": "paper"}, "different search space"),
    ({"epochs": 3}, "different --epochs"),
])
def test_reusing_a_study_with_other_data_or_space_is_refused(tiny, change, needle):
    search("builtin:wine", **tiny)
    before = [(t.number, t.state, t.value) for t in _study(tiny["storage"]).trials]
    data = change.pop("data", "builtin:wine")
    with pytest.raises(SamtuneError, match=needle):
        search(data, **{**tiny, **change})
    assert [(t.number, t.state, t.value) for t in _study(tiny["storage"]).trials] == before


def test_fixed_lr_is_not_searched(tiny):
    search("builtin:wine", **{**tiny, "lr": 0.02})
    for t in _study(tiny["storage"]).trials:
        if t.state == TrialState.COMPLETE:
            assert "lr" not in t.params
            assert t.user_attrs["config"]["base_kwargs"]["lr"] == 0.02


def test_diverging_trials_are_pruned_with_their_reason(tiny, tmp_path):
    space = tmp_path / "wild.yaml"
    space.write_text(yaml.safe_dump({
        "variants": ["sgd", "sam"], "lr": {"low": 9.0, "high": 10.0, "log": True},
        "base_kwargs": {"momentum": 0.99, "weight_decay": 0.0},
        "rho": {"default": {"low": 0.05, "high": 0.1}}, "m": [None],
    }))
    with pytest.raises(SamtuneError, match="no trial .* completed"):
        search("builtin:wine", **{**tiny, "space": str(space)})
    trials = _study(tiny["storage"]).trials
    assert all(t.state == TrialState.PRUNED for t in trials)
    assert all(t.user_attrs["prune_reason"].startswith("diverged") for t in trials)


def test_the_closing_lines_say_how_many_searched_trials_completed(tiny, capsys):
    rec = search("builtin:wine", **{**tiny, "progress": True, "trials": 5})
    err = capsys.readouterr().err
    st = rec.study
    assert st["n_complete_searched"] <= st["n_complete"]
    assert (f"trials: {st['n_complete']} complete ({st['n_complete_searched']} of them chosen by the search"
            in err)
