"""Cost on the evaluation axis, with answers worked out by hand: a trial's cost attribute, the
cheapest candidate within noise of the best, ``--max-cost``, and the configuration the
recommendation chooses between gain and cost (``_cost``, ``pick_candidates``,
``build_recommendation``)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from samtune import SAMConfig
from samtune.data import load_data
from samtune.errors import ConfigError
from samtune.models import build_model
from samtune.search import SearchOptions
from samtune.search._confirm import pick_candidates
from samtune.search._cost import cost_attrs, frontier, val_margin
from samtune.search._evidence import joint_z
from samtune.search._objective import summarize
from samtune.search._recommendation import Recommendation, build_recommendation
from samtune.train import TrainConfig, seed_everything, train
from samtune.train._loop import typical_step_time

optuna.logging.set_verbosity(optuna.logging.WARNING)
N = 100  # test examples
SGD = SAMConfig(variant="sgd", rho=0.0)


def _trial(config: SAMConfig, value, step_time=None, *, host=None, cost=None, state=TrialState.COMPLETE):
    attrs = {"config": config.to_dict(), "config_text": config.describe()}
    if step_time is not None:
        attrs["step_time"] = step_time
    if host is not None:
        attrs["worker_host"] = host
    if cost is not None:
        attrs["cost"] = cost
    return create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                        params={"variant": config.variant},
                        distributions={"variant": CategoricalDistribution(["sgd", config.variant])},
                        user_attrs=attrs)


# -- the trial's cost attribute ------------------------------------------------------------------


def test_a_trials_cost_is_its_step_time_over_the_median_of_the_completed_baselines():
    trials = [_trial(SGD, 0.7, 1.0, host="a"), _trial(SGD, 0.7, 2.0, host="a"),
              _trial(SGD, 0.7, 4.0, host="a"), _trial(SGD, 0.7, 10.0, host="b"),
              _trial(SGD, None, 100.0, host="a", state=TrialState.PRUNED),  # not completed
              _trial(SAMConfig(variant="sam"), 0.8, 50.0, host="a")]  # not a baseline
    sam = SAMConfig(variant="sam")
    result = SimpleNamespace(step_time=3.0, steps=10, perturbed_steps=10)
    assert cost_attrs(trials, sam, result, "a") == {"cost": pytest.approx(3.0 / 2.0)}  # host a: 1, 2, 4
    assert cost_attrs(trials, sam, result, "c") == {"cost": pytest.approx(3.0 / 3.0)}  # none on c: all four
    assert cost_attrs(trials, sam, result) == {"cost": pytest.approx(1.0)}
    # a baseline trial counts itself among the baselines it is measured against: 1, 2, 3, 4
    assert cost_attrs(trials, SGD, result, "a") == {"cost": pytest.approx(3.0 / 2.5)}
    assert cost_attrs([], SGD, result, "a") == {"cost": 1.0}
    assert cost_attrs(trials[4:], sam, result, "a") == {}  # no baseline completed: no cost yet


def test_a_perturb_schedule_records_the_share_of_steps_that_perturbed():
    periodic = SAMConfig(variant="sam", perturb="periodic", perturb_kwargs={"every": 4})
    result = SimpleNamespace(step_time=1.5, steps=8, perturbed_steps=2)
    got = cost_attrs([_trial(SGD, 0.7, 1.0)], periodic, result)
    assert got == {"cost": 1.5, "perturbed_share": 0.25}


def test_the_loop_counts_the_perturbed_steps_and_weighs_both_kinds_of_step():
    data = load_data("builtin:wine", seed=0)
    seed_everything(0)
    model = build_model(None, data.input_shape, data.num_classes)
    config = SAMConfig(variant="sam", perturb="periodic", perturb_kwargs={"every": 3})
    result = train(model, data, config, TrainConfig(epochs=2, seed=0))
    assert result.steps > 3 and result.perturbed_steps == math.ceil(result.steps / 3)
    # one median would be the plain step's; the weighted one lies between the two kinds
    assert typical_step_time([1.0] * 6 + [4.0] * 3, [False] * 6 + [True] * 3) == pytest.approx(2.0)
    assert typical_step_time([1.0, 2.0, 9.0], [True] * 3) == 2.0


def test_a_late_schedule_summarizes_over_the_epochs_that_perturbed():
    # the first epoch of a late schedule has no perturbed pass, so no flip rate
    data = load_data("builtin:wine", seed=0)
    seed_everything(0)
    model = build_model(None, data.input_shape, data.num_classes)
    config = SAMConfig(variant="sam", perturb="late", perturb_kwargs={"start": 0.3})
    history = train(model, data, config, TrainConfig(epochs=4, seed=0)).history
    assert ["flip_rate" in r for r in history] == [False, True, True, True]
    attrs = summarize(history)
    assert attrs["early_flip_rate"] == pytest.approx(history[1]["flip_rate"])
    flips = [r["flip_rate"] for r in history[1:]]
    assert attrs["mean_flip_rate"] == pytest.approx(sum(flips) / 3)
    assert attrs["mean_forgetting_rate"] == pytest.approx(sum(r["forgetting_rate"] for r in history) / 4)


def test_a_search_trial_records_its_cost_against_the_baseline_trial(tiny):
    from samtune.search import search

    search("builtin:wine", **tiny)
    study = optuna.load_study(study_name="tiny", storage=tiny["storage"])
    base = study.trials[0]  # the staged search's one baseline trial comes first
    assert base.user_attrs["config"]["variant"] == "sgd" and base.user_attrs["cost"] == 1.0
    for t in study.get_trials(states=(TrialState.COMPLETE,))[1:]:
        assert t.user_attrs["cost"] == pytest.approx(t.user_attrs["step_time"] / base.user_attrs["step_time"])


# -- candidates ----------------------------------------------------------------------------------

FAM = [  # (config, validation value, cost): the best SAM-family value is 0.90
    (SAMConfig(variant="sam", rho=0.1), 0.90, 2.0),
    (SAMConfig(variant="asam", rho=1.0), 0.88, 3.0),
    (SAMConfig(variant="sam", rho=0.1, m=16), 0.86, 1.3),
    (SAMConfig(variant="sam", rho=0.05, perturb="periodic", perturb_kwargs={"every": 2}), 0.85, 1.1),
    (SAMConfig(variant="gsam", rho=0.1), 0.80, 1.05),
]


def _study(rows=FAM) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(SGD, 0.75, 1.0, cost=1.0))
    for config, value, cost in rows:
        study.add_trial(_trial(config, value, cost, cost=cost))
    return study


def _numbers(picked):
    return [None if t is None else t.number for _, t in picked]


def test_the_margin_is_two_binomial_standard_errors_of_the_best_value():
    assert val_margin(create_trial(value=0.9), 100) == pytest.approx(2 * (0.9 * 0.1 / 100) ** 0.5)
    assert val_margin(create_trial(value=0.9), None) == 0.0
    cost_metric = create_trial(value=-0.3, user_attrs={"final_val_acc": 0.8})  # a cost's utility
    assert val_margin(cost_metric, 100) == pytest.approx(2 * (0.8 * 0.2 / 100) ** 0.5)


def test_the_cheapest_trial_within_noise_of_the_best_joins_the_top_k():
    study = _study()
    # margin 2 sqrt(0.9 x 0.1 / 100) = 0.06: 0.85 (cost 1.1) is within, 0.80 (1.05) is not
    assert _numbers(pick_candidates(study, 2, {}, val_size=100)) == [1, 2, 4, 0]
    assert _numbers(pick_candidates(study, 2, {})) == [1, 2, 0]  # no val size: no margin known
    assert _numbers(pick_candidates(study, 4, {}, val_size=100)) == [1, 2, 3, 4, 0]  # already in
    # 10 000 examples: margin 0.006, only the best itself is within: nothing added
    assert _numbers(pick_candidates(study, 2, {}, val_size=10_000)) == [1, 2, 0]


def test_max_cost_keeps_trials_above_it_out_of_the_candidates():
    study = _study()
    assert _numbers(pick_candidates(study, 2, {}, val_size=100, max_cost=2.5)) == [1, 3, 4, 0]
    # within 1.5 the best is 0.86: margin 2 sqrt(0.86 x 0.14 / 100) = 0.069, so 0.80 (1.05) is in
    assert _numbers(pick_candidates(study, 2, {}, val_size=100, max_cost=1.5)) == [3, 4, 5, 0]
    assert _numbers(pick_candidates(study, 2, {}, val_size=100, max_cost=1.0)) == [0]


def test_a_trial_without_a_cost_attribute_is_costed_from_its_step_time():
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(SAMConfig(variant="sam", rho=0.1), 0.90, 4.0))  # before any baseline
    study.add_trial(_trial(SGD, 0.75, 2.0, cost=1.0))
    study.add_trial(_trial(SAMConfig(variant="asam", rho=1.0), 0.89, 2.4, cost=1.2))
    assert _numbers(pick_candidates(study, 1, {}, val_size=100, max_cost=1.5)) == [2, 1]
    assert _numbers(pick_candidates(study, 1, {}, val_size=100)) == [0, 2, 1]


# -- the recommendation --------------------------------------------------------------------------


def _mask(right: int) -> torch.Tensor:
    m = torch.zeros(N, dtype=torch.bool)
    m[:right] = True
    return m


def _cand(variant, right, step_time, description, rho=0.1):
    acc = right / N
    config = SAMConfig(variant=variant, rho=0.0 if variant == "sgd" else rho).to_dict()
    return {"config": config, "description": description, "trial": None, "val_accuracy": None,
            "test_accuracy": {"mean": acc, "std": 0.0, "per_seed": [acc, acc]},
            "correct": [_mask(right)] * 2, "step_time": step_time, "epochs": 2}


def _build(confirmed, study=None, **kwargs):
    dataset = SimpleNamespace(describe=lambda: {})
    train_config = SimpleNamespace(epochs=2, batch_size=32)
    return build_recommendation(study or optuna.create_study(direction="maximize"), confirmed,
                                dataset, train_config, "mlp", "sqlite://", "data", **kwargs)


def _se(n_differ: int) -> float:
    """The paired SE when one side gets ``n_differ`` more of the 100 examples right (nested)."""
    d = torch.tensor([1.0] * n_differ + [0.0] * (N - n_differ))
    return d.std().item() / 10


def test_the_cheaper_configuration_within_noise_of_the_best_is_used_and_both_are_named():
    base = _cand("sgd", 60, 1.0, "base")
    best = _cand("sam", 90, 3.0, "sam best")
    cheap = _cand("asam", 88, 1.5, "asam cheap", rho=1.0)
    rec = _build([base, best, cheap])
    # cheap: +28 pp, bound z x 4.51 pp, z the max-t z of the best of two nested (so strongly
    # correlated) gains, below Bonferroni's 2.28; 2 examples short of the best, within the
    # gap's bound 2 x 1.41 pp
    z, how = joint_z([best, cheap], base)
    assert how == "max-t" and 2.0 <= z < 2.28
    assert rec.verdict == "use" and rec.config.variant == "asam"
    assert rec.gain == pytest.approx(0.28) and rec.cost_multiplier == 1.5
    assert rec.evidence["candidate"] == "sam best" and rec.evidence["gain"] == pytest.approx(0.30)
    chosen = rec.evidence["chosen"]
    assert chosen["gap"] == pytest.approx(0.02) and chosen["gap_se"] == pytest.approx(_se(2))
    assert chosen["bound"] == pytest.approx(z * _se(28)) and chosen["cost"] == 1.5
    assert rec.best == {"description": "sam best", "gain": pytest.approx(0.30), "cost": 3.0}
    assert rec.summary == (
        f"use asam cheap: +28.00 pp at 1.50x the baseline's cost (best: sam best +30.00 pp at "
        f"3.00x); test accuracy 0.8800 vs baseline 0.6000 (noise bound {100 * z * _se(28):.2f} pp "
        f"({z:g} x SE {100 * _se(28):.2f} pp: test examples {100 * _se(28):.2f}, seeds 0.00; 2 vs 2 seeds; "
        f"z for the best of several candidates ({z:g})))")
    assert Recommendation.from_dict(rec.to_dict()).to_dict() == rec.to_dict()


def test_a_cheaper_configuration_outside_the_noise_of_the_best_is_not_used():
    base = _cand("sgd", 60, 1.0, "base")
    best = _cand("sam", 90, 3.0, "sam best")
    cheap = _cand("asam", 85, 1.5, "asam cheap", rho=1.0)  # 5 short: bound 2 x 2.19 pp
    rec = _build([base, cheap, best])
    assert rec.verdict == "use" and rec.config.variant == "sam" and rec.gain == pytest.approx(0.3)
    assert rec.best == {} and "chosen" not in rec.evidence
    assert rec.summary.startswith("use sam best: +30.00 pp at 3.00x the baseline's cost; test accuracy")


def test_a_cheaper_configuration_whose_own_gain_is_within_its_noise_is_not_used():
    base = _cand("sgd", 60, 1.0, "base")
    best = _cand("sam", 66, 3.0, "sam best")  # +6 pp > 2.28 x 2.39 pp: use
    cheap = _cand("asam", 64, 1.5, "asam cheap", rho=1.0)  # +4 pp <= 2.28 x 1.97 pp; 2 short of best
    rec = _build([base, best, cheap])
    assert rec.verdict == "use" and rec.config.variant == "sam" and rec.best == {}


def test_max_cost_leaves_the_best_out_and_the_summary_says_so():
    base = _cand("sgd", 60, 1.0, "base")
    best = _cand("sam", 90, 3.0, "sam best")
    cheap = _cand("asam", 85, 1.5, "asam cheap", rho=1.0)
    rec = _build([base, best, cheap], max_cost=2.0)
    assert rec.verdict == "use" and rec.config.variant == "asam" and rec.gain == pytest.approx(0.25)
    assert rec.evidence["candidate"] == "asam cheap" and rec.best == {} and rec.max_cost == 2.0
    assert rec.left_out == {"description": "sam best", "config": best["config"], "where": "confirmation",
                            "gain": pytest.approx(0.3), "val_metric": None, "cost": 3.0}
    assert rec.summary.startswith("use asam cheap: +25.00 pp at 1.50x the baseline's cost; test")
    assert rec.summary.endswith("; --max-cost 2 left out a better configuration, sam best (+30.00 pp "
                                "on test, at 3.00x the baseline's cost)")
    # nothing within the limit: the baseline, and why
    alone = _build([base, best], max_cost=2.0)
    assert alone.verdict == "keep-baseline" and alone.config.variant == "sgd"
    assert alone.summary.startswith("SAM does not help here: keep the tuned baseline (base); no "
                                    "SAM-family configuration within --max-cost 2 was confirmed; "
                                    "--max-cost 2 left out a better configuration, sam best")


def test_max_cost_names_the_searchs_best_trial_it_kept_from_the_confirmation():
    study = _study()  # the best SAM-family trial: sam rho=0.1, 0.90 at 2.0x
    base = _cand("sgd", 60, 1.0, "base")
    cheap = _cand("sam", 85, 1.2, "sam rho 0.05", rho=0.05)
    rec = _build([base, cheap], study, max_cost=1.5)
    assert rec.left_out["where"] == "search" and rec.left_out["trial"] == 1
    assert rec.left_out["cost"] == 2.0 and rec.left_out["val_metric"] == 0.90
    assert rec.summary.endswith(f"; --max-cost 1.5 left out a better configuration, "
                                f"{FAM[0][0].describe()} (validation accuracy 0.9000, the search's "
                                f"best, at 2.00x the baseline's cost)")
    assert _build([base, cheap], study, max_cost=2.0).left_out == {}  # 2.0 is within 2.0
    assert _build([base, cheap], study).left_out == {}  # no limit: nothing left out


def test_the_frontier_holds_the_configurations_no_other_beats_on_gain_and_cost():
    base = _cand("sgd", 60, 1.0, "base")
    best = _cand("sam", 90, 3.0, "sam best")
    cheap = _cand("asam", 88, 1.5, "asam cheap", rho=1.0)
    beaten = _cand("gsam", 70, 2.0, "gsam")  # +10 pp at 2x: cheap is better on both
    worse = _cand("obf", 55, 1.2, "obf")  # -5 pp at 1.2x: the baseline is better on both
    rec = _build([base, best, cheap, beaten, worse])
    assert [(f["description"], f["cost"]) for f in rec.frontier] == [
        ("base", 1.0), ("asam cheap", 1.5), ("sam best", 3.0)]
    assert rec.frontier[0] == {"description": "base", "config": base["config"], "gain": 0.0,
                               "bound": None, "cost": 1.0}
    assert rec.frontier[1]["gain"] == pytest.approx(0.28)
    z, _ = joint_z([best, cheap, beaten, worse], base)  # the best of four correlated gains
    assert 2.0 <= z < 2.53 and rec.frontier[1]["bound"] == pytest.approx(z * _se(28))
    assert {c["description"]: c["cost_multiplier"] for c in rec.candidates} == {
        "sam best": 3.0, "asam cheap": 1.5, "gsam": 2.0, "base": 1.0, "obf": 1.2}
    assert frontier([{"gain": math.nan, "cost": 1.0}, {"gain": 0.1, "cost": 2.0}]) == [
        {"gain": 0.1, "cost": 2.0}]


# -- the option ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.5, 0, -2, "2", True, math.nan])
def test_max_cost_must_be_a_number_at_least_one(bad):
    with pytest.raises(ConfigError, match="--max-cost must be a number >= 1"):
        SearchOptions(max_cost=bad)


def test_max_cost_is_a_field_of_every_entry_point():
    import inspect

    from samtune import SamSearch, autoconfigure

    assert SearchOptions(max_cost=1).max_cost == 1 and SearchOptions(max_cost=2.5).max_cost == 2.5
    assert "max_cost" in inspect.signature(autoconfigure).parameters
    with pytest.raises(ConfigError, match="--max-cost"):
        SamSearch(max_cost=0.9)
