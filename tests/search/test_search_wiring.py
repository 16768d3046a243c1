"""The search's wiring, end to end: thread rule, refusals, the worker's data check, surplus trials,
and a search whose verdict and candidates are known in advance."""

from __future__ import annotations

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from torch import nn

from samtune.errors import SamtuneError
from samtune.search import search
from samtune.search._workers import SMALL_MODEL_PARAMS, cpu_threads, worker_objective, worker_study


@pytest.fixture
def threads():
    """Restore the suite's one thread whatever a test sets."""
    yield
    torch.set_num_threads(1)


def small_mlp(input_shape, num_classes):
    """A model factory for ``model="tests.search.test_search_wiring:small_mlp"``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), 8),
                         nn.ReLU(), nn.Linear(8, num_classes))


# -- the one-thread rule --------------------------------------------------------------------------


def test_cpu_threads_gives_small_models_one_thread_and_large_ones_torchs_default(threads):
    torch.set_num_threads(3)
    small = nn.Linear(10, 10)
    large = nn.Linear(SMALL_MODEL_PARAMS, 1)  # 2M weights + 1 bias: just over the bound
    assert cpu_threads(small, None) == 1
    assert cpu_threads(large, None) == 3
    assert cpu_threads(small, 2) == 2 and cpu_threads(large, 5) == 5
    assert cpu_threads(nn.Linear(SMALL_MODEL_PARAMS - 2, 1), None) == 1  # 2M - 1 params: small
    assert cpu_threads(nn.Linear(SMALL_MODEL_PARAMS - 1, 1), None) == 3  # 2M: not under 2M


@pytest.mark.parametrize("requested, expected", [(None, 1), (2, 2)])
def test_search_trains_small_models_on_one_thread_and_restores_the_setting(
        tiny, threads, requested, expected):
    seen: list[int] = []
    module = small_mlp((13,), 3)
    # training forwards (grad on): the model check's forward before the search comes first
    module.register_forward_hook(
        lambda *_: seen.append(torch.get_num_threads()) if torch.is_grad_enabled() else None)
    torch.set_num_threads(3)
    search("builtin:wine", module=module, **{**tiny, "trials": 2, "confirm_seeds": 1},
           threads=requested)
    assert len(seen) > 50 and set(seen) == {expected}  # every step of every trial and confirmation
    assert torch.get_num_threads() == 3


# -- refusing a study made with other settings ----------------------------------------------------

@pytest.mark.parametrize("change, needle", [
    ({"batch_size": 32}, "batch size"),
    ({"model": "tests.search.test_search_wiring:small_mlp"}, "model"),
])
def test_reusing_a_study_with_another_batch_size_or_model_is_refused(tiny, change, needle):
    opts = {**tiny, "trials": 2, "confirm_seeds": 1}
    search("builtin:wine", **opts)
    study = optuna.load_study(study_name="tiny", storage=tiny["storage"])
    before = [(t.number, t.state, t.value) for t in study.trials]
    with pytest.raises(SamtuneError, match=f"different .*{needle}"):
        search("builtin:wine", **{**opts, **change})
    assert [(t.number, t.state, t.value) for t in study.trials] == before


# -- workers: other data refused, surplus trials never trained --------------------------------------


def _csv(path, shift=0.0):
    g = torch.Generator().manual_seed(0)
    rows = ["a,b,label"]
    for i in range(90):
        a, b = torch.randn(2, generator=g).tolist()
        rows.append(f"{a + (i % 3) + shift:.4f},{b:.4f},{i % 3}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_worker_refuses_data_other_than_the_studys(tiny, tmp_path, capsys):
    from samtune.cli import main

    data = _csv(tmp_path / "table.csv")
    search(str(data), **{**tiny, "trials": 2, "confirm_seeds": 1})
    _csv(data, shift=0.5)  # same path, other contents
    capsys.readouterr()  # what the search printed (a small-test warning) is not the worker's
    code = main(["worker", "--study", "tiny", "--storage", tiny["storage"]])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "fingerprint" in err
    study = optuna.load_study(study_name="tiny", storage=tiny["storage"])
    assert len(study.trials) == 2  # nothing ran


def test_a_trial_beyond_the_target_fails_as_surplus_without_training(tiny, tmp_path):
    data = _csv(tmp_path / "table.csv")
    search(str(data), **{**tiny, "trials": 2, "confirm_seeds": 1})
    study, run = worker_study("tiny", tiny["storage"], seed=0)
    objective = worker_objective(study, run)  # the objective a worker runs
    assert objective.target == 2
    study.optimize(objective, n_trials=1, catch=(Exception,))
    last = study.trials[-1]
    assert last.state == TrialState.FAIL
    assert last.user_attrs["fail_reason"].startswith("surplus")
    assert "config" not in last.user_attrs and "history" not in last.user_attrs  # never trained
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 2


# -- a search whose answer is known ----------------------------------------------------------------


def test_a_sam_identical_to_the_baseline_gives_keep_baseline_with_zero_gain(tiny, tmp_path):
    """SAM at rho = 0 is the base optimizer: its confirmation runs (same seeds) equal the
    baseline's, so the verdict must be keep-baseline, the candidates the best SAM trial and the
    best baseline, and the recommended config the best baseline trial's."""
    space = tmp_path / "same.yaml"
    space.write_text(yaml.safe_dump({
        "name": "same", "variants": ["sgd", "sam"], "lr": 0.05,
        "base_kwargs": {"momentum": 0.9, "weight_decay": 5e-4},
        "rho": {"default": {"low": 0.0, "high": 0.0}}, "m": [None], "schedule": ["constant"],
    }))
    rec = search("builtin:wine", **{**tiny, "trials": 4, "space": str(space), "pruner": "none"})
    study = optuna.load_study(study_name="tiny", storage=tiny["storage"])
    done = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.value)
    assert len(done) == 4
    baseline = next(t for t in done if t.user_attrs["config"]["variant"] == "sgd")
    assert rec.verdict == "keep-baseline" and rec.gain == 0.0
    assert rec.config.to_dict() == baseline.user_attrs["config"]
    best_sam = next(t for t in done if t.user_attrs["config"]["variant"] == "sam")
    # --top-k 1: the best SAM-family trial and the best baseline besides it, and the search's
    # cheaper-schedule trial when SAM led on val (it is within noise of the best and cheaper)
    picked = [c["trial"] for c in rec.candidates]
    assert best_sam.number in picked and baseline.number in picked and len(set(picked)) == len(picked)
    extra = [n for n in picked if n not in (best_sam.number, baseline.number)]
    assert all(study.trials[n].user_attrs.get("origin") == "cheaper" for n in extra)
    accs = {c["config"]["variant"]: c["test_accuracy"]["per_seed"] for c in rec.candidates}
    assert accs["sam"] == accs["sgd"]  # the same seeds: the same runs
    assert rec.evidence["gain"] == 0.0
