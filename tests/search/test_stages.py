"""The staged search: the baseline's lr first (extended beyond the range's edges), then the SAM
family around it. An in-memory study and an objective that trains nothing: its value is a
known function of the configuration."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from optuna.trial import TrialState

from samtune.search import _stages
from samtune.search._space import SearchSpace
from samtune.search._stages import (
    STAGE_ATTR,
    _point,
    advance,
    baseline_lrs,
    baseline_points,
    enqueue_stage,
    family_space,
    neighbours,
    sample_baseline,
    searched,
    trial_space,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def space() -> SearchSpace:
    return SearchSpace.load("default").with_batch_size(64)


def run(study: optuna.Study, sp: SearchSpace, n: int, peak_lr: float, *, sam_bonus: float = 0.0,
        target: int = 30, bonus=None) -> None:
    """``n`` trials whose value peaks at ``peak_lr`` (log distance), SAM-family + ``sam_bonus``
    (+ ``bonus(config)`` when given)."""
    def objective(trial: optuna.Trial) -> float:
        fixed = study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params")
        stage, s = trial_space(study, sp, fixed)
        config = sample_baseline(trial, s, fixed) if stage == "baseline" else s.sample(trial, fixed)
        trial.set_user_attr("stage", stage)
        trial.set_user_attr("config", config.to_dict())
        extra = bonus(config) if bonus is not None and config.perturbs else 0.0
        return -abs(math.log(config.lr / peak_lr)) + (sam_bonus if config.perturbs else 0.0) + extra

    enqueue_stage(study, sp, target)
    study.optimize(objective, n_trials=n, callbacks=[lambda st, t: advance(st, sp, target)])


def lrs_of(study: optuna.Study, stage: str) -> list[float]:
    return [t.user_attrs["config"]["base_kwargs"]["lr"] for t in study.trials
            if t.user_attrs.get("stage") == stage]


def test_baseline_grid_is_centred_in_the_lr_range_and_shrinks_with_the_trials():
    sp = space()  # lr 0.005-2
    assert [baseline_points(t) for t in (1, 3, 8, 12, 16, 20, 24, 60)] == [1, 1, 2, 4, 5, 6, 8, 8]
    assert baseline_lrs(sp, 3) == [pytest.approx(math.sqrt(0.005 * 2.0), rel=1e-2)]
    grid = baseline_lrs(sp, 24)
    assert len(grid) == 8 and 0.005 < grid[0] < grid[-1] < 2.0
    assert grid[-1] > 1.0  # a BN net's best SGD lr can lie far above 0.3 (RESULTS.md)
    ratios = [b / a for a, b in zip(grid, grid[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-2)  # equal steps on a log scale
    assert baseline_lrs(sp.fix_lr(0.1), 24) == [0.1]


def test_the_baseline_comes_first_then_the_family_around_the_tuned_lr():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 13, peak_lr=0.04)
    base = lrs_of(study, "baseline")
    # the grid (0.0325 is its best), then the vertex of the parabola through 0.0154, 0.0325
    # and 0.0688, which puts the optimum towards 0.04
    assert base == [*baseline_lrs(sp, 30), 0.0375]
    assert [t.user_attrs["stage"] for t in study.trials[:9]] == ["baseline"] * 9
    assert study.trials[8].user_attrs["origin"] == "vertex" and not searched(study.trials[8])
    record = study.user_attrs[STAGE_ATTR]
    assert record["baseline_lr"] == pytest.approx(0.0375) and not record["lr_on_edge"]
    assert record["family_lr"] == pytest.approx(0.0431)  # the parabola through 0.0325-0.0688
    family = [t for t in study.trials if t.user_attrs.get("stage") == "family"]
    assert family and all(t.user_attrs["config"]["variant"] != "sgd" for t in family)
    assert all(0.0431 / 2 - 1e-9 <= t.user_attrs["config"]["base_kwargs"]["lr"] <= 0.0431 * 2 + 1e-9
               for t in family)
    # the space's SAM-family warm starts run first, at the family's centre lr
    assert [(t.params["variant"], t.params["m"]) for t in family[:4]] == [
        ("sam", None), ("asam", None), ("asam", 16), ("gsam-obf", None)]
    assert all(t.params["lr"] == pytest.approx(0.0431) for t in family[:4])
    # ... at the variants' defaults (gamma at the range's floor), GSAM + OBF under lr_prop
    assert [t.params.get("eta") for t in family[1:3]] == [0.01, 0.01]
    assert {k: family[3].params[k] for k in ("alpha", "gamma", "schedule")} == {
        "alpha": 0.1, "gamma": 1e-4, "schedule": "lr_prop"}


def test_a_best_lr_on_the_edge_extends_the_grid_beyond_the_range():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 12, peak_lr=5.0)
    base = lrs_of(study, "baseline")
    assert base[:8] == baseline_lrs(sp, 30)
    assert base[8:10] == [pytest.approx(1.38 * 2.5, rel=1e-2), pytest.approx(1.38 * 6.25, rel=1e-2)]
    assert base[10:] == [4.71]  # the vertex between 3.45 and 8.63
    record = study.user_attrs[STAGE_ATTR]
    assert record["baseline_lr"] == pytest.approx(4.71, rel=1e-2)
    assert not record["lr_on_edge"]  # 8.63 was tried and was worse
    assert record["lr_tried"][-1] == pytest.approx(8.63, rel=1e-2)


def test_extensions_stop_after_three_steps_and_say_the_lr_is_on_the_edge():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 12, peak_lr=1e-4)
    assert len(lrs_of(study, "baseline")) == 8 + 3
    record = study.user_attrs[STAGE_ATTR]
    assert record["lr_on_edge"] and record["baseline_lr"] == pytest.approx(0.00727 / 2.5**3, rel=1e-2)
    assert record["family_lr"] == record["baseline_lr"]  # no neighbour below: no parabola


def test_a_failed_baseline_trial_runs_again_on_resume():
    sp = space()
    study = optuna.create_study(direction="maximize")
    enqueue_stage(study, sp, 30)
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)  # interrupted: Ctrl-C in the first trial
    enqueue_stage(study, sp, 30)  # the resumed search
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(TrialState.WAITING,))]
    assert sorted(p["lr"] for p in waiting) == sorted(baseline_lrs(sp, 30))


def test_a_resumed_study_keeps_its_settled_stage():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 9, peak_lr=0.04)
    record = dict(study.user_attrs[STAGE_ATTR])
    enqueue_stage(study, sp, 30)
    assert study.user_attrs[STAGE_ATTR] == record
    stage, s = trial_space(study, sp, None)
    assert stage == "family" and "sgd" not in s.variants


def test_after_the_warm_starts_the_best_family_trials_neighbours_run():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 24, peak_lr=0.04)  # every warm start scores alike: the first (sam) is best
    family = [t for t in study.trials if t.user_attrs.get("stage") == "family"]
    record = study.user_attrs[STAGE_ATTR]
    best, second = family[0], family[1]
    assert record["refined_around"] == best.number and best.params["variant"] == "sam"
    want = [{**best.params, "rho": 0.1}, {**best.params, "rho": 0.025},
            {**best.params, "lr": 0.0862}, {**best.params, "lr": pytest.approx(0.0431 / 2, rel=1e-3)},
            {**best.params, "m": 16}]
    assert [t.params for t in family[4:9]] == want
    # the runner-up (the first of the ties after the best: asam) gets its neighbours too, but
    # for its m = 16 twin, a warm start that has run
    assert record["second_centre"] == second.number and second.params["variant"] == "asam"
    extra = [{**second.params, "rho": 2.0}, {**second.params, "rho": 0.5},
             {**second.params, "lr": 0.0862}, {**second.params, "lr": pytest.approx(0.0431 / 2, rel=1e-3)}]
    assert [t.params for t in family[9:13]] == extra
    assert record["neighbours"] == want + extra  # lr / 2 is the range's low end, exactly
    assert all("fixed_params" in t.system_attrs for t in family[4:13])
    # no cheaper schedules: the baseline at the vertex (0.0375) is nearer the peak than the
    # family's centre (0.0431), so SAM is not ahead
    assert "fixed_params" not in family[13].system_attrs  # TPE samples what remains
    # the search chose the neighbours and the sampled trials, not the grid or the warm starts
    assert [searched(t) for t in study.trials] == [False] * 9 + [False] * 4 + [True] * 11
    enqueue_stage(study, sp, 30)  # a resumed study runs none of them again
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_neighbours_stay_in_the_space_and_toggle_the_batch_design():
    fam = family_space(space(), 0.1)  # lr 0.05-0.2, sam rho 0.01-0.5, m null/8/16/32
    top = {"variant": "sam", "rho": 0.5, "lr": 0.2, "schedule": "constant", "m": 16}
    got = neighbours(fam, top)
    assert got == [{**top, "rho": 0.25}, {**top, "lr": 0.1}, {**top, "m": None}]
    odd = family_space(space(), 0.1 / 3)  # lr up to 0.0666..., not a 3-digit number
    near_top = {**top, "lr": 0.0666}  # lr x2 is clipped to 0.06667: 0.1% away, no neighbour
    assert [p["lr"] for p in neighbours(odd, near_top) if p["lr"] != 0.0666] == [0.0333]
    assert neighbours(fam, {"variant": "sam", "rho": 0.05, "lr": 0.1, "m": None})[-1]["m"] == 16


def test_a_better_neighbour_gets_a_round_of_its_own_then_the_best_runs_cheaper(monkeypatch):
    assert _stages.CHEAPER == ("stochastic:p=0.5", "late:start=0.5")  # SAM on half the steps
    monkeypatch.setattr(_stages, "REFINE_ROUNDS", 2)  # one round by default
    sp = space()
    study = optuna.create_study(direction="maximize")

    def bonus(config) -> float:  # SAM ahead of the baseline, more so with a larger rho
        return 0.5 + 0.1 * math.log(config.rho) - (0.3 if config.perturb != "always" else 0.0)

    run(study, sp, 30, peak_lr=0.04, bonus=bonus)
    record = study.user_attrs[STAGE_ATTR]
    by_number = {t.number: t for t in study.trials}
    first, second = (by_number[n] for n in record["rounds"])
    assert record["refined_around"] == first.number and first.params["variant"] == "asam"
    assert second.params == {**first.params, "rho": 2.0}  # round one's rho x2 won round two
    points = [_point(t) for t in study.trials if t.user_attrs.get("origin") == "neighbour"]
    assert {**first.params, "rho": 2.0} in points and first.params not in points  # no rerun
    assert len(points) == len({json.dumps(p, sort_keys=True) for p in points})
    best = by_number[record["cheaper_around"]]
    assert best.params["rho"] == 4.0  # round two's rho x2: the best, made cheaper
    cheap = [t for t in study.trials if t.user_attrs.get("origin") == "cheaper"]
    assert [t.user_attrs["config"]["perturb"] for t in cheap] == ["stochastic", "late"]
    assert [t.user_attrs["config"]["perturb_kwargs"] for t in cheap] == [{"p": 0.5}, {"start": 0.5}]
    assert all(t.params == best.params and searched(t) for t in cheap)
    enqueue_stage(study, sp, 30)  # a resumed study runs none of them again
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_no_cheaper_schedules_when_sam_is_not_ahead_of_the_baseline():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 20, peak_lr=0.04, sam_bonus=-0.5)
    assert "cheaper_around" not in study.user_attrs[STAGE_ATTR]
    assert not any(t.user_attrs.get("origin") == "cheaper" for t in study.trials)


def test_the_family_centre_is_the_parabolas_vertex_within_half_a_grid_step():
    from samtune.search._stages import family_centre

    def grid(peak: float, lrs=(0.01, 0.02, 0.04, 0.08)) -> list[tuple[float, float]]:
        return [(lr, -math.log(lr / peak) ** 2) for lr in lrs]  # a parabola in log lr

    # on a parabola the vertex is the peak itself, wherever it lies within half a step
    assert family_centre(grid(0.025), 0.02) == pytest.approx(0.025, rel=2e-3)
    assert family_centre(grid(0.017), 0.02) == pytest.approx(0.017, rel=2e-3)
    assert family_centre(grid(0.03, (0.01, 0.02, 0.08)), 0.02) == pytest.approx(0.03, rel=2e-3)
    # a tie with the neighbour puts the vertex half-way (in log lr), and no further
    assert family_centre([(0.01, 0.38), (0.02, 0.41), (0.08, 0.41)], 0.02) == pytest.approx(0.04, rel=1e-2)
    assert family_centre([(0.01, 0.30), (0.02, 0.41), (0.04, 0.409)], 0.02) < 0.0283
    assert family_centre([(0.01, 0.41), (0.02, 0.41), (0.04, 0.30)], 0.02) == pytest.approx(0.0141, rel=1e-2)
    # no neighbour on one side, a flat or convex triple: the best lr as it is
    assert family_centre(grid(0.005), 0.01) == 0.01
    assert family_centre(grid(0.05)[:3], 0.04) == 0.04
    assert family_centre([(0.01, 0.5), (0.02, 0.5), (0.04, 0.5)], 0.02) == 0.02
    assert family_centre([(0.01, 0.6), (0.02, 0.5), (0.04, 0.6)], 0.02) == 0.02
    # unequal spacing: the best's neighbours are the nearest lrs tried, in any order
    pts = [(0.08, -math.log(0.08 / 0.03) ** 2), (0.02, -math.log(0.02 / 0.03) ** 2),
           (0.05, -math.log(0.05 / 0.03) ** 2), (0.03, 0.0)]
    assert family_centre(pts, 0.03) == pytest.approx(0.03, rel=2e-3)
    # an lr tried twice counts once, at its better value (no zero step between points)
    assert family_centre([*pts, (0.03, -5.0)], 0.03) == pytest.approx(0.03, rel=2e-3)


def test_the_vertex_runs_once_and_only_where_no_lr_near_it_was_tried():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 10, peak_lr=0.0325)  # the peak on a grid point: the vertex is that point
    assert lrs_of(study, "baseline") == baseline_lrs(sp, 30)
    assert study.trials[8].user_attrs["stage"] == "family"
    assert study.user_attrs[STAGE_ATTR]["family_lr"] == pytest.approx(0.0325, rel=0.02)

    study = optuna.create_study(direction="maximize")
    run(study, sp, 9, peak_lr=0.04)  # the grid and its vertex
    before = len(study.trials)
    enqueue_stage(study, sp, 30)  # a resumed study: the vertex has run, the stage moves on
    assert not any(t.user_attrs.get("origin") == "vertex" for t in study.trials[before:])
    assert sum(t.user_attrs.get("origin") == "vertex" for t in study.trials) == 1
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert waiting and all("variant" in t.system_attrs["fixed_params"] for t in waiting)


def test_a_search_of_few_trials_spares_its_family_the_vertex_trial():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 6, peak_lr=0.03, target=12)  # 4 grid points: the family needs every trial
    assert lrs_of(study, "baseline") == baseline_lrs(sp, 12)
    record = study.user_attrs[STAGE_ATTR]
    assert record["baseline_lr"] == 0.0473  # the family still centred by the parabola:
    assert record["family_lr"] == pytest.approx(0.0341)  # 1.4x away, a vertex at 24 trials
    assert not any(t.user_attrs.get("origin") == "vertex" for t in study.trials)


@pytest.mark.parametrize("origin", ["neighbour", "cheaper"])
def test_a_failed_neighbour_or_cheaper_trial_runs_again_on_resume_as_what_it_was(origin):
    sp = space()
    study = optuna.create_study(direction="maximize")
    failed = []

    def objective(trial: optuna.Trial) -> float:
        fixed = study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params")
        stage, s = trial_space(study, sp, fixed)
        config = sample_baseline(trial, s, fixed) if stage == "baseline" else s.sample(trial, fixed)
        trial.set_user_attr("stage", stage)
        trial.set_user_attr("config", config.to_dict())
        if trial.user_attrs.get("origin") == origin and not failed:
            failed.append(trial.number)
            raise RuntimeError("the machine went away")
        return -abs(math.log(config.lr / 0.04)) + (0.5 if config.perturbs else 0.0)

    enqueue_stage(study, sp, 30)
    with pytest.raises(RuntimeError):
        study.optimize(objective, n_trials=30, callbacks=[lambda st, t: advance(st, sp, 30)])
    lost = study.trials[failed[0]]
    assert lost.state == TrialState.FAIL
    for t in study.get_trials(states=(TrialState.WAITING,)):  # what the machine left waiting
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    enqueue_stage(study, sp, 30)  # the resumed study
    again = [t for t in study.get_trials(states=(TrialState.WAITING,))
             if t.system_attrs["fixed_params"] == lost.system_attrs["fixed_params"]]
    assert len(again) == 1 and again[0].user_attrs.get("origin") == origin


def test_the_runner_ups_neighbours_leave_room_for_the_cheaper_schedules():
    sp = space()
    study = optuna.create_study(direction="maximize")
    # 7 baseline trials, 4 warm starts, the best's 5 neighbours: 5 of 21 left, of which the
    # runner-up's neighbours (4 new ones) take 3 and the best under the cheaper schedules 2
    run(study, sp, 21, peak_lr=0.04, sam_bonus=0.5, target=21)
    origins = [t.user_attrs.get("origin") for t in study.trials]
    assert origins.count(None) == 11 and origins[-2:] == ["cheaper", "cheaper"]
    assert origins.count("neighbour") == 8 and len(study.user_attrs[STAGE_ATTR]["neighbours"]) == 9
    assert len(study.trials) == 21 and not study.get_trials(states=(TrialState.WAITING,))


def _baseline_trial(lr: float, value: float, origin: str | None = None):
    return optuna.trial.create_trial(
        params={"lr": lr}, value=value,
        distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 10.0, log=True)},
        user_attrs={"stage": "baseline", "config": {"variant": "sgd", "base_kwargs": {"lr": lr}},
                    **({"origin": origin} if origin else {})})


def _study_with(trials) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for t in trials:
        study.add_trial(t)
    return study


def test_a_vertex_that_ties_the_best_grid_point_is_the_tuned_baseline():
    grid = [(0.01, 0.6), (0.02, 0.8), (0.04, 0.7), (0.08, 0.5), (0.16, 0.4)]
    study = _study_with([*(_baseline_trial(lr, v) for lr, v in grid),
                         _baseline_trial(0.025, 0.8, origin="vertex")])
    said = advance(study, space(), 15)
    record = study.user_attrs[STAGE_ATTR]
    assert record["baseline_lr"] == 0.025 and record["baseline_trial"] == 5
    assert said.startswith("baseline tuned: lr 0.025, val 0.8000, best of 6 baseline trial(s) "
                           "over lr 0.01-0.16; searching the SAM family at lr ")
    assert "on the edge" not in said and not record["lr_on_edge"]


def test_three_grid_points_are_enough_to_extend_beyond_an_edge_and_the_progress_says_so():
    study = _study_with([_baseline_trial(lr, v) for lr, v in ((0.01, 0.5), (0.02, 0.6), (0.04, 0.7))])
    said = advance(study, space(), 9)
    assert said == "baseline: the best lr 0.04 is on the edge of the lrs tried (0.01-0.04); trying lr 0.1"
    assert [t.system_attrs["fixed_params"] for t in study.get_trials(states=(TrialState.WAITING,))] == [
        {"lr": 0.1}]
    study = _study_with([_baseline_trial(lr, v) for lr, v in ((0.01, 0.7), (0.02, 0.6))])
    advance(study, space(), 9)  # two points: no edge to speak of, the stage settles
    assert study.user_attrs[STAGE_ATTR]["baseline_lr"] == 0.01
    waiting = study.get_trials(states=(TrialState.WAITING,))  # the family's warm starts, no lr
    assert waiting and all("variant" in t.system_attrs["fixed_params"] for t in waiting)


def test_the_vertex_runs_from_five_grid_points_on_and_says_where():
    grid = [(0.01, 0.5), (0.02, 0.8), (0.04, 0.75), (0.08, 0.5), (0.16, 0.4)]
    study = _study_with([_baseline_trial(lr, v) for lr, v in grid])
    said = advance(study, space(), 15)  # 15 trials: five grid points
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["origin"] == "vertex"
    vertex = waiting[0].system_attrs["fixed_params"]["lr"]
    assert 0.02 < vertex < 0.0283  # towards 0.04, within half a step
    assert said == (f"baseline: the best lr 0.02 and its neighbours put the optimum at lr "
                    f"{vertex:.3g}; trying it")
    study = _study_with([_baseline_trial(lr, v) for lr, v in grid])
    said = advance(study, space(), 14)  # four grid points' worth of trials: no vertex
    assert said.startswith("baseline tuned: lr 0.02,") and "(centred on lr " in said
    waiting = study.get_trials(states=(TrialState.WAITING,))  # the family's warm starts
    assert waiting and all("variant" in t.system_attrs["fixed_params"] for t in waiting)
    assert not any(t.user_attrs.get("origin") == "vertex" for t in study.trials)


def _family_trial(value: float, perturb: str = "always"):
    return optuna.trial.create_trial(value=value, user_attrs={
        "stage": "family", "config": {"variant": "sam", "perturb": perturb}})


def test_the_cheaper_schedules_run_once_and_never_around_a_cheap_schedule():
    sp = space()
    study = optuna.create_study(direction="maximize")
    run(study, sp, 24, peak_lr=0.04, target=24, bonus=lambda c: 1.0)  # SAM ahead: cheaper ran
    assert study.user_attrs[STAGE_ATTR]["cheaper_around"] is not None
    study.add_trial(_family_trial(9.0))  # a new best family trial after the cheaper ones
    assert advance(study, sp, 40) is None
    assert not study.get_trials(states=(TrialState.WAITING,))

    study = optuna.create_study(direction="maximize")
    run(study, sp, 24, peak_lr=0.04, target=24, sam_bonus=-0.5)  # SAM behind: no cheaper yet
    assert "cheaper_around" not in study.user_attrs[STAGE_ATTR]
    study.add_trial(_family_trial(9.0, perturb="late"))  # the best is already a cheap schedule
    assert advance(study, sp, 40) is None
    assert "cheaper_around" not in study.user_attrs[STAGE_ATTR]
    assert not study.get_trials(states=(TrialState.WAITING,))
    study.add_trial(_family_trial(10.0))  # an always-perturbing best ahead of the baseline
    assert advance(study, sp, 40).startswith("family: trying trial ")
    assert len(study.get_trials(states=(TrialState.WAITING,))) == len(_stages.CHEAPER)
