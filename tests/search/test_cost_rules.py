"""The rules of ``samtune.search._cost`` one at a time, with answers worked out by hand: which
trials the baseline's step time comes from, when a cost is unknown, the validation margin's
edges, ``--max-cost`` at its bound, the frontier's dominance, and how ``cheapest_near`` walks
the confirmed records (ties, the bound's edge, records it must skip and go on past)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState, create_trial

from samtune import SAMConfig
from samtune.search._cost import (
    admissible,
    baseline_step_time,
    cheapest_near,
    cost_attrs,
    cost_of_trial,
    frontier,
    record_cost,
    trial_cost,
    val_margin,
)
from samtune.search._evidence import Z

SGD = {"config": {"variant": "sgd"}}
SAM = {"config": {"variant": "sam"}}


def _t(attrs, value=0.5, state=TrialState.COMPLETE):
    return create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                        user_attrs=attrs)


# -- the baseline's step time --------------------------------------------------------------------

def test_trials_without_a_config_or_a_finite_step_time_or_not_complete_do_not_count():
    trials = [_t({**SGD, "step_time": 2.0}), _t({"step_time": 50.0}),  # no config: not a baseline
              _t({**SAM, "step_time": 40.0}), _t({**SGD, "step_time": math.nan}),
              _t({**SGD, "step_time": 30.0}, state=TrialState.PRUNED), _t({**SGD, "step_time": 4.0})]
    assert baseline_step_time(trials) == 3.0


def test_without_a_host_every_hosts_baselines_count_with_a_trials_own_time():
    trials = [_t({**SGD, "step_time": 1.0, "worker_host": "a"}),
              _t({**SGD, "step_time": 3.0, "worker_host": "b"})]
    assert baseline_step_time(trials, own=8.0) == 3.0  # median of 1, 3 and 8
    assert baseline_step_time(trials, host="a", own=8.0) == 4.5  # host a's only: 1 and 8
    assert baseline_step_time(trials, host="c") == 2.0  # a host that ran none: everyone's


def test_an_own_time_that_is_not_finite_is_not_counted():
    trials = [_t({**SGD, "step_time": 1.0}), _t({**SGD, "step_time": 3.0})]
    assert baseline_step_time(trials, own=math.nan) == 2.0
    assert baseline_step_time([], own=math.nan) is None
    assert baseline_step_time([], own=5.0) == 5.0


@pytest.mark.parametrize("step_time, base", [(math.nan, 2.0), (1.0, 0.0), (1.0, -1.0), (1.0, None)])
def test_a_cost_is_unknown_without_a_finite_step_time_and_a_positive_base(step_time, base):
    assert trial_cost(step_time, base) is None


def test_a_cost_is_the_step_time_over_the_base():
    assert trial_cost(3.0, 2.0) == 1.5


# -- a trial's cost attributes ---------------------------------------------------------------------

def test_a_result_without_a_step_time_has_no_cost():
    trials = [_t({**SGD, "step_time": 2.0})]
    stochastic = SAMConfig(variant="sam", rho=0.05, perturb="stochastic", perturb_kwargs={"p": 0.5})
    assert cost_attrs(trials, stochastic, SimpleNamespace(steps=10, perturbed_steps=4)) == {
        "perturbed_share": 0.4}


def test_a_result_without_step_counts_has_no_share_and_one_without_perturbed_steps_a_share_of_0():
    trials = [_t({**SGD, "step_time": 2.0})]
    stochastic = SAMConfig(variant="sam", rho=0.05, perturb="stochastic", perturb_kwargs={"p": 0.5})
    assert cost_attrs(trials, stochastic, SimpleNamespace(step_time=5.0)) == {"cost": 2.5}
    assert cost_attrs(trials, stochastic, SimpleNamespace(step_time=5.0, steps=10)) == {
        "cost": 2.5, "perturbed_share": 0.0}


def test_a_trial_without_a_cost_or_a_step_time_has_no_cost():
    assert cost_of_trial(_t({**SAM}), 2.0) is None
    assert cost_of_trial(_t({**SAM, "step_time": 3.0}), 2.0) == 1.5
    assert cost_of_trial(_t({**SAM, "step_time": 3.0, "cost": 1.25}), 2.0) == 1.25


# -- the validation margin ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, p", [(0.0, 0.0), (1.0, 1.0), (0.9, 0.9), (1.5, 0.8), (-3.0, 0.8)])
def test_the_margin_takes_p_from_the_value_in_0_1_else_from_the_validation_accuracy(value, p):
    best = _t({"final_val_acc": 0.8}, value=value)
    assert val_margin(best, 100) == pytest.approx(Z * math.sqrt(p * (1 - p) / 100))


def test_the_margin_without_a_validation_accuracy_takes_p_one_half():
    assert val_margin(_t({}, value=-3.0), 100) == pytest.approx(Z * 0.05)
    assert val_margin(_t({}, value=0.9), None) == 0.0


# -- confirmation records: their cost and --max-cost ---------------------------------------------

def _rec(variant, step_time=math.nan):
    return {"config": {"variant": variant}, "step_time": step_time}


@pytest.mark.parametrize("base", [math.nan, 0.0, -2.0])
def test_a_records_cost_is_unknown_without_a_positive_baseline_time(base):
    assert math.isnan(record_cost(_rec("sam", 3.0), _rec("sgd", base)))
    assert math.isnan(record_cost(_rec("sam", 3.0), {"config": {"variant": "sgd"}}))


def test_max_cost_admits_a_record_at_exactly_its_bound_and_one_of_unknown_cost():
    base, at, above, unknown = _rec("sgd", 2.0), _rec("sam", 4.0), _rec("asam", 4.2), _rec("gsam")
    assert admissible([base, at, above, unknown], 2.0) == [base, at, unknown]
    assert admissible([base, above], None) == [base, above]


# -- the frontier ------------------------------------------------------------------------------------

def test_an_equal_gain_at_a_higher_cost_and_an_equal_cost_at_a_lower_gain_are_beaten():
    a = {"n": "a", "gain": 0.02, "cost": 1.4}
    same_gain_dearer = {"n": "b", "gain": 0.02, "cost": 2.0}
    same_cost_worse = {"n": "c", "gain": 0.01, "cost": 1.4}
    twin = {"n": "t", "gain": 0.02, "cost": 1.4}  # equal on both: neither beats the other
    unknown = {"n": "u", "gain": math.nan, "cost": 1.0}
    assert [p["n"] for p in frontier([same_gain_dearer, same_cost_worse, a, twin, unknown])] == ["a", "t"]


# -- the cheapest record within noise of the best ------------------------------------------------

def _ev(gain, se=0.01):
    return {"gain": gain, "se": se, "seeds": [3, 3]}


def _near(fam, evs, gaps, baseline):
    return cheapest_near(fam, fam[0], {id(c): e for c, e in zip(fam, evs)}, baseline,
                         lambda c, best: {"se": gaps[id(c)]})


def test_a_record_that_is_not_a_use_or_too_far_from_the_best_is_skipped_and_the_walk_goes_on():
    base = _rec("sgd", 1.0)
    best, no_use, too_far, cheap = _rec("asam", 4.0), _rec("sam", 1.5), _rec("obf", 1.6), _rec("sam", 2.0)
    fam = [best, no_use, too_far, cheap]
    evs = [_ev(0.06), _ev(0.015), _ev(0.03), _ev(0.05)]  # no_use: 0.015 <= Z x 0.01
    gaps = {id(no_use): 0.01, id(too_far): 0.01, id(cheap): 0.01}  # too_far: 0.03 > Z x 0.01
    chosen, gap = _near(fam, evs, gaps, base)
    assert chosen is cheap
    assert gap == pytest.approx({"gap": 0.01, "se": 0.01, "bound": Z * 0.01})


def test_a_gap_exactly_at_the_bound_is_within_noise():
    base, best, other = _rec("sgd", 1.0), _rec("asam", 4.0), _rec("sam", 2.0)
    # exact in binary: best gain 0.75, other's 0.25, se of the difference 0.25 -> bound 0.5
    chosen, gap = _near([best, other], [_ev(0.75, 0.125), _ev(0.25, 0.0625)],
                        {id(other): 0.25}, base)
    assert chosen is other and gap["gap"] == 0.5 == gap["bound"]


def test_a_tie_in_cost_goes_to_the_better_record():
    base, best, tie = _rec("sgd", 1.0), _rec("asam", 2.0), _rec("sam", 2.0)
    chosen, gap = _near([best, tie], [_ev(0.06), _ev(0.05)], {id(tie): 0.01}, base)
    assert chosen is best and gap is None


def test_a_best_of_unknown_cost_gives_way_to_a_costed_record_within_noise():
    base, best, costed = _rec("sgd", 1.0), _rec("asam"), _rec("sam", 2.0)
    chosen, _ = _near([best, costed], [_ev(0.06), _ev(0.05)], {id(costed): 0.01}, base)
    assert chosen is costed
