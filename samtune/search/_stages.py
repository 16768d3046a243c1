"""The staged search: tune the baseline first, then search the SAM family around its lr.

A practitioner tunes the baseline before trying SAM, and tries SAM at and around the tuned
learning rate; a verdict against a baseline tuned less than the SAM family is worthless.

1. **Baseline.** ``baseline_points(trials)`` sgd trials (8 for 24 trials or more, a third of
   the trials below) on a log grid over the space's lr range are enqueued first. When they are
   finished and the best of three or more sits on an edge of the lrs tried,
   one more trial beyond that edge (a factor ``EDGE_FACTOR``) is enqueued, up to
   ``MAX_EXTENSIONS`` times, and never beyond ``LR_BOUNDS``: a fixed range cannot fit every
   data set. Then one more baseline trial runs at the vertex of the parabola (in log lr)
   through the best and its two neighbours (``family_centre``; not when an lr within 10% of
   it was tried, nor in a search of fewer than 15 trials, whose family cannot spare one): a
   grid 2.1x apart misses a sharp optimum by up to 1.45x, and two grid points that tie put it
   between them. The best of all (a tie: the vertex) is the tuned baseline.
2. **Family.** Once the baseline is settled, the study's ``samtune_stage`` user attribute
   records its best lr and the SAM-family space: the space's variants without the baseline,
   lr within a factor ``FAMILY_LR_FACTOR`` of the family's centre lr, and the space's
   SAM-family warm starts at that centre, enqueued at once. Every later trial samples from it.
   The centre is the tuned lr refined by a parabola through the best baseline and its two
   nearest neighbours tried (in log lr, ``family_centre``): two grid points that tie, or nearly,
   put the optimum between them, not on the one listed first.

3. **Neighbours.** When the family's warm starts are finished, the best completed SAM-family
   trial's neighbours are enqueued (``neighbours``): rho x2 and /2, lr x2 and /2 (each within
   its range), and the other batch design (m on the whole batch <-> the space's middle m). The
   research's advice is to vary the perturbation size and the batch design around a promising
   point; the neighbours also tell the recommendation how the gain holds near it
   (``stability``). The runner-up's neighbours run too, after the best's and leaving room for
   stage 4: one seed of a small validation split often ranks two warm starts the wrong way
   round, and the best cell may lie next to either (RESULTS.md, "A second centre"). With
   ``REFINE_ROUNDS`` above 1, a neighbour that beats the trial they surround gets a round of
   its own (points already run are not run again); one round is the default.
4. **Cheaper.** When the refinement ends with a SAM-family trial above the tuned baseline, the
   same configuration runs under the cheap perturbation schedules ``CHEAPER`` (SAM on a random
   half of the steps, on the last half of training): about 1.5x the baseline's cost instead of
   2x or more. They are tried as neighbours of the best, not as a dimension TPE searches (which
   cost the search its breadth: ``benchmarks/RESULTS.md``), and the confirmation weighs them
   by cost (``_confirm.cheapest_near_best``). TPE samples the trials that remain.

Every decision is read from the study (trials' ``stage`` attribute, the study attribute), so a
resumed study or a worker on another machine continues where the study stands.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from samtune.optim import SAMConfig, get_variant
from samtune.search._space import SearchSpace

ORIGIN_ATTR = "origin"  # trial user attribute of an enqueued trial: "neighbour", "cheaper", "vertex"
ORIGINS = ("neighbour", "cheaper")  # enqueued by the search from its own best trial
STAGE_ATTR = "samtune_stage"  # study user attribute, set when the baseline stage is settled
TRIAL_STAGE = "stage"  # trial user attribute: "baseline" or "family"
BASELINE_POINTS = 8  # baseline trials on the space's lr range before any extension (at most)
TRIALS_PER_POINT = 3  # with fewer trials, fewer points: a third of --trials, at least one
MIN_POINTS_TO_EXTEND = 3  # with fewer points, "on the edge" says nothing
EDGE_FACTOR = 2.5  # lr step beyond an edge (a little over the default grid's 2.1x spacing)
MAX_EXTENSIONS = 3  # edge steps at most: 2.5^3 ~ 16x beyond the range
LR_BOUNDS = (1e-4, 10.0)  # what SAMConfig accepts (lr <= 10) and a sane floor
FAMILY_LR_FACTOR = 2.0  # the SAM family's lr within [tuned / 2, tuned * 2] (3 and a second
# round of neighbours measured worse on the decision benchmark: RESULTS.md, run G)
NEIGHBOUR_FACTOR = 2.0  # the neighbours' rho and lr steps
REFINE_ROUNDS = 1  # rounds of neighbours at most, each around a new best family trial
CHEAPER = ("stochastic:p=0.5", "late:start=0.5")  # cheap schedules tried on the best (stage 4)
VERTEX = "vertex"  # origin of the baseline trial run at the parabola's vertex (stage 1)
VERTEX_NEW = 1.1  # the vertex runs when no baseline lr tried lies within this factor of it
VERTEX_MIN_POINTS = 5  # ... and when the grid has this many points (15 trials or more): below,
# the family's few trials cannot spare one (RESULTS.md, run W)


def _lr_range(space: SearchSpace) -> tuple[float, float] | None:
    return None if not isinstance(space.lr, dict) else (space.lr["low"], space.lr["high"])


def baseline_points(trials: int) -> int:
    """How many baseline lrs a search of ``trials`` trials starts with."""
    return max(1, min(BASELINE_POINTS, trials // TRIALS_PER_POINT))


def baseline_lrs(space: SearchSpace, trials: int = 10**9) -> list[float]:
    """The baseline stage's first lrs: the centres of ``baseline_points(trials)`` equal steps
    of the space's log lr range (one point: its geometric middle)."""
    rng = _lr_range(space)
    if rng is None:
        return [float(space.lr)]
    lo, hi = rng
    n = baseline_points(trials)
    span = math.log(hi) - math.log(lo)
    return [float(f"{math.exp(math.log(lo) + (i + 0.5) * span / n):.3g}") for i in range(n)]


def baseline_space(space: SearchSpace) -> SearchSpace:
    """The baseline stage samples sgd only, over the space's lr range (an enqueued edge
    extension beyond it is suggested from a range widened to hold it: ``sample_baseline``).

    Its trials suggest only ``lr`` (``sample_baseline``): Optuna refuses a categorical
    parameter whose choices change from trial to trial, so ``variant`` is left to the family's
    trials, with the family's variants as its choices."""
    return SearchSpace(**{**space.__dict__, "variants": ["sgd"], "warm_start": []})


def sample_baseline(trial: optuna.Trial, space: SearchSpace, fixed: dict[str, Any] | None = None):
    """A baseline trial's configuration: sgd at the suggested (or the fixed) lr."""
    lr: float = space.lr  # type: ignore[assignment]
    if isinstance(space.lr, dict):
        low, high = space.lr["low"], space.lr["high"]
        if fixed and "lr" in fixed:  # an edge extension lies beyond the range
            low, high = min(low, fixed["lr"]), max(high, fixed["lr"])
        lr = trial.suggest_float("lr", low, high, log=space.lr["log"])
    return SAMConfig(variant="sgd", rho=0.0, base=space.base,
                     base_kwargs={**space.base_kwargs, "lr": lr})


def family_space(space: SearchSpace, tuned_lr: float) -> SearchSpace:
    """The SAM family's space around the tuned baseline lr (a fixed lr stays fixed)."""
    variants = [v for v in space.variants if get_variant(v).perturbs]
    lr: dict[str, Any] | float = space.lr
    if _lr_range(space) is not None:
        lr = {"low": max(LR_BOUNDS[0], tuned_lr / FAMILY_LR_FACTOR),
              "high": min(LR_BOUNDS[1], tuned_lr * FAMILY_LR_FACTOR), "log": True}
    warm = [{**ws, "lr": tuned_lr} for ws in space.warm_start if ws.get("variant") in variants]
    return SearchSpace(**{**space.__dict__, "variants": variants, "lr": lr, "warm_start": warm})


def family_centre(points: list[tuple[float, float]], best_lr: float) -> float:
    """The lr the SAM family is centred on: the vertex of the parabola through the best
    baseline and its neighbours on each side (``points``: (lr, value) of the completed baseline
    trials), in log lr, kept within half a grid step of the best; the best lr itself when it
    has no neighbour on one side or the three points do not bend down.

    >>> family_centre([(0.01, 0.38), (0.02, 0.41), (0.04, 0.41)], 0.02)  # a tie: between them
    0.0283
    >>> family_centre([(0.01, 0.38), (0.02, 0.41), (0.04, 0.38)], 0.02)  # symmetric: the best
    0.02
    """
    best_at: dict[float, float] = {}  # one value per lr (the better of two trials of one lr)
    for lr, v in points:
        best_at[math.log(lr)] = max(v, best_at.get(math.log(lr), -math.inf))
    pts = sorted(best_at.items())
    xs = [x for x, _ in pts]
    xb = math.log(best_lr)
    i = min(range(len(xs)), key=lambda k: abs(xs[k] - xb)) if xs else 0
    if not 0 < i < len(xs) - 1:
        return best_lr
    (x0, y0), (x1, y1), (x2, y2) = pts[i - 1], pts[i], pts[i + 1]
    # the second divided difference: negative when the three points bend down
    curve = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
    if not curve < 0:
        return best_lr
    slope = (y1 - y0) / (x1 - x0) + curve * (x1 - x0)  # the parabola's slope at x1
    vertex = x1 - slope / (2 * curve)
    vertex = min(max(vertex, (x0 + x1) / 2), (x1 + x2) / 2)
    return float(f"{math.exp(vertex):.3g}")


def stage_record(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(STAGE_ATTR)


def trial_space(study: optuna.Study, space: SearchSpace,
                fixed: dict[str, Any] | None = None) -> tuple[str, SearchSpace]:
    """The stage a new trial belongs to and the space it samples from (``fixed``: the trial's
    enqueued params; an enqueued baseline runs as one even after the stage moved on)."""
    record = stage_record(study)
    if (record is None or (fixed is not None and "variant" not in fixed)
            or not any(get_variant(v).perturbs for v in space.variants)):
        return "baseline", baseline_space(space)
    return "family", SearchSpace.from_dict(record["space"], where="the study's family space")


def _baseline_trials(study: optuna.Study, states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    def baseline(t: FrozenTrial) -> bool:
        fixed = t.system_attrs.get("fixed_params")
        if t.state == TrialState.WAITING:
            return fixed is not None and "variant" not in fixed
        return t.user_attrs.get(TRIAL_STAGE) == "baseline"
    return [t for t in study.get_trials(deepcopy=False, states=states) if baseline(t)]


def _has_run(trial: FrozenTrial, params: dict[str, Any]) -> bool:
    """Whether ``trial`` runs (or ran) the warm-start ``params``."""
    fixed = trial.system_attrs.get("fixed_params")
    if fixed is not None:
        return fixed == params
    return all(k in trial.params and trial.params[k] == v for k, v in params.items())


def enqueue_warm_start(study: optuna.Study, warm: list[dict[str, Any]], target: int,
                       user_attrs: dict[str, Any] | None = None) -> int:
    """Enqueue the warm-start configurations that no live trial holds, as many as the trials
    still to run; returns how many were enqueued.

    Live: waiting, running, complete or pruned. A failed or interrupted warm-start trial is
    not live, so it runs again on resume (Optuna's ``skip_if_exists`` would count it as done).
    Enqueuing only as many as the trials still to run leaves none waiting in a study that has
    reached its target; a top-up enqueues the rest.
    """
    live = study.get_trials(deepcopy=False, states=(
        TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED))
    missing = [p for p in warm if not any(_has_run(t, p) for t in live)]
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in live)
    room = target - finished - sum(t.state == TrialState.WAITING for t in live)
    for params in missing[:max(0, room)]:
        study.enqueue_trial(params, user_attrs=user_attrs)
    return min(len(missing), max(0, room))


def baseline_params(space: SearchSpace, trials: int) -> list[dict[str, Any]]:
    fixed = _lr_range(space) is None
    return [{} if fixed else {"lr": lr} for lr in baseline_lrs(space, trials)]


def enqueue_stage(study: optuna.Study, space: SearchSpace, target: int) -> None:
    """Enqueue what the study's current stage still misses (a new or resumed study): the
    baseline grid, or the family's warm starts and neighbours, then move on if it can."""
    record = stage_record(study)
    if record is not None:
        family = SearchSpace.from_dict(record["space"], where="the study's family space")
        enqueue_warm_start(study, family.warm_start_params(), target)
        enqueue_warm_start(study, record.get("neighbours", []), target,
                           user_attrs={ORIGIN_ATTR: "neighbour"})
        enqueue_warm_start(study, record.get("cheaper", []), target,
                           user_attrs={ORIGIN_ATTR: "cheaper"})
        advance(study, space, target)
        return
    enqueue_warm_start(study, baseline_params(space, target), target)
    advance(study, space, target)


def _clip(value: float, rng: dict[str, Any]) -> float:
    return min(rng["high"], max(rng["low"], float(f"{value:.3g}")))  # rounded, then in range


def neighbours(family: SearchSpace, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The points next to a family trial's ``params``: rho and lr a factor
    ``NEIGHBOUR_FACTOR`` either way, the other batch design; each within the space, none equal
    to ``params`` or to each other."""
    out: list[dict[str, Any]] = []

    def add(**change: Any) -> None:
        point = {**params, **change}
        same = all(isinstance(v, float) and isinstance(params.get(k), float)
                   and math.isclose(v, params[k], rel_tol=0.01) for k, v in change.items())
        if point != params and not same and point not in out:  # clipped back onto params: no
            out.append(point)

    if "rho" in params:
        rng = family.rho_range(params["variant"])
        for f in (NEIGHBOUR_FACTOR, 1 / NEIGHBOUR_FACTOR):
            add(rho=_clip(params["rho"] * f, rng))
    if "lr" in params and isinstance(family.lr, dict):
        for f in (NEIGHBOUR_FACTOR, 1 / NEIGHBOUR_FACTOR):
            add(lr=_clip(params["lr"] * f, family.lr))
    if "m" in params:
        sized = [m for m in family.m if m is not None]
        other = None if params["m"] is not None else (sized[len(sized) // 2] if sized else None)
        if other in family.m:
            add(m=other)
    return out


def _point(trial: FrozenTrial) -> dict[str, Any] | None:
    """The point a trial runs: its params (a waiting trial: its enqueued ones), with the
    ``perturb`` label it was enqueued with when that is no parameter of the space."""
    fixed = trial.system_attrs.get("fixed_params")
    if trial.state == TrialState.WAITING:
        return fixed
    point = dict(trial.params)
    if fixed and "perturb" in fixed and "perturb" not in point:
        point["perturb"] = fixed["perturb"]
    return point


def _new(points: list[dict[str, Any]], trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """The points no trial of ``trials`` runs or ran (failed ones excepted: they run again)."""
    ran = [_point(t) for t in trials if t.state != TrialState.FAIL]
    return [p for p in points if p not in ran]


def _rounds(record: dict[str, Any]) -> list[int]:
    """The trials the neighbour rounds so far were centred on (a study of an earlier samtune
    records only the first, as ``refined_around``)."""
    if "rounds" in record:
        return list(record["rounds"])
    return [] if record.get("refined_around") is None else [record["refined_around"]]


def cheaper(family: SearchSpace, params: dict[str, Any]) -> list[dict[str, Any]]:
    """``params`` under each of the ``CHEAPER`` schedules (those the space can run: all of them
    when it searches no perturb schedule, else the ones it lists)."""
    searched_perturb = len(family.perturb) > 1
    return [{**params, "perturb": label} for label in CHEAPER
            if not searched_perturb or label in family.perturb]


def _refine(study: optuna.Study, record: dict[str, Any], target: int) -> str | None:
    """Once the family's warm starts (or the last round) are finished: enqueue the neighbours
    of the best SAM-family trial when it is new (``REFINE_ROUNDS`` rounds at most), then, once,
    the best under the cheap schedules when it beats the tuned baseline."""
    if record.get("stage") != "family":
        return None
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return None  # warm starts or neighbours still to run
    family = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.user_attrs.get(TRIAL_STAGE) == "family" and t.value is not None
              and math.isfinite(t.value)
              and t.user_attrs.get(ORIGIN_ATTR) != "cheaper"]  # refined and made cheaper: as run
    if not family:
        return None
    best = max(family, key=lambda t: t.value)
    space = SearchSpace.from_dict(record["space"], where="the study's family space")
    rounds = _rounds(record)
    live = study.get_trials(deepcopy=False)
    if len(rounds) < REFINE_ROUNDS and best.number not in rounds:
        points = _new(neighbours(space, dict(best.params)), live)
        second = (max((t for t in family if t.number != best.number), key=lambda t: t.value, default=None)
                  if not rounds else None)  # the first round hedges one seed's luck: the runner-up too
        extra = ([p for p in _new(neighbours(space, dict(second.params)), live) if p not in points]
                 if second is not None else [])
        study.set_user_attr(STAGE_ATTR, {
            **record, "refined_around": rounds[0] if rounds else best.number,
            "rounds": [*rounds, best.number],
            **({"second_centre": second.number} if second is not None else {}),
            "neighbours": [*record.get("neighbours", []), *points, *extra]})
        n = enqueue_warm_start(study, points, target, user_attrs={ORIGIN_ATTR: "neighbour"})
        # the runner-up's neighbours leave room for the best under the cheaper schedules
        n2 = enqueue_warm_start(study, extra, target - len(CHEAPER), user_attrs={ORIGIN_ATTR: "neighbour"})
        if n or n2:
            also = (f", and {n2} of trial {second.number} "
                    f"({second.user_attrs.get('config_text', second.params)})" if n2 else "")
            return (f"family: trying {n} neighbour(s) of trial {best.number} "
                    f"({best.user_attrs.get('config_text', best.params)}){also}: rho and lr x2 "
                    "and /2, the other m")
        record = stage_record(study)
        rounds = _rounds(record)
    if record.get("cheaper_around") is not None or not rounds:
        return None
    if best.user_attrs.get("config", {}).get("perturb", "always") != "always":
        return None  # already a cheap schedule
    if not best.value > record.get("baseline_value", math.inf):
        return None  # SAM is not ahead: nothing to make cheaper (yet)
    points = _new(cheaper(space, dict(best.params)), live)
    study.set_user_attr(STAGE_ATTR, {**record, "cheaper_around": best.number, "cheaper": points})
    n = enqueue_warm_start(study, points, target, user_attrs={ORIGIN_ATTR: "cheaper"})
    if not n:
        return None
    return (f"family: trying trial {best.number} "
            f"({best.user_attrs.get('config_text', best.params)}) under cheaper schedules: "
            f"{', '.join(p['perturb'] for p in points[:n])}")


def advance(study: optuna.Study, space: SearchSpace, target: int) -> str | None:
    """Move the study on: while the baseline stage runs, extend the lr grid beyond an edge
    the best baseline sits on, or settle the stage and enqueue the family's warm starts; once
    those are finished, enqueue the best family trial's neighbours.
    Returns what it did (for the progress line), None when nothing changed."""
    if not any(get_variant(v).perturbs for v in space.variants):
        return None
    record = stage_record(study)
    if record is not None:
        return _refine(study, record, target)
    if _baseline_trials(study, (TrialState.WAITING, TrialState.RUNNING)):
        return None
    finished = _baseline_trials(study, (TrialState.COMPLETE, TrialState.PRUNED))
    done = [t for t in finished if t.state == TrialState.COMPLETE
            and t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    best = max(done, key=lambda t: (t.value, t.user_attrs.get(ORIGIN_ATTR) == VERTEX))
    best_lr = float(best.user_attrs.get("config", {}).get("base_kwargs", {}).get(
        "lr", best.params.get("lr", space.lr if not isinstance(space.lr, dict) else 0.05)))
    rng = _lr_range(space)
    lrs = sorted(float(t.params["lr"]) for t in finished if "lr" in t.params) or [best_lr]
    on_edge = (rng is not None and len(lrs) >= MIN_POINTS_TO_EXTEND
               and (best_lr <= lrs[0] or best_lr >= lrs[-1]))
    if on_edge:
        steps = sum(lr < rng[0] * 0.999 or lr > rng[1] * 1.001 for lr in lrs)
        nxt = best_lr / EDGE_FACTOR if best_lr <= lrs[0] else best_lr * EDGE_FACTOR
        if steps < MAX_EXTENSIONS and LR_BOUNDS[0] <= nxt <= LR_BOUNDS[1]:
            nxt = float(f"{nxt:.3g}")
            if enqueue_warm_start(study, [{"lr": nxt}], target):
                return (f"baseline: the best lr {best_lr:.3g} is on the edge of the lrs tried "
                        f"({lrs[0]:.3g}-{lrs[-1]:.3g}); trying lr {nxt:.3g}")
    centre = best_lr if rng is None else family_centre(
        [(float(t.params["lr"]), float(t.value)) for t in done if "lr" in t.params], best_lr)
    refined = any(t.user_attrs.get(ORIGIN_ATTR) == VERTEX for t in finished)  # none waits
    new = all(abs(math.log(centre / lr)) > math.log(VERTEX_NEW) for lr in lrs)
    if (not refined and new and baseline_points(target) >= VERTEX_MIN_POINTS
            and enqueue_warm_start(study, [{"lr": centre}], target,
                                   user_attrs={ORIGIN_ATTR: VERTEX})):
        return (f"baseline: the best lr {best_lr:.3g} and its neighbours put the optimum at "
                f"lr {centre:.3g}; trying it")
    family = family_space(space, centre)
    study.set_user_attr(STAGE_ATTR, {
        "stage": "family", "baseline_lr": best_lr, "family_lr": centre,
        "baseline_trial": best.number,
        "baseline_value": float(best.value), "baseline_trials": len(lrs),
        "baseline_completed": len(done), "lr_tried": [lrs[0], lrs[-1]],
        "lr_on_edge": bool(on_edge), "space": family.to_dict()})
    enqueue_warm_start(study, family.warm_start_params(), target)
    span = (f"lr {family.lr['low']:.3g}-{family.lr['high']:.3g}" if isinstance(family.lr, dict)
            else f"lr {family.lr:.3g}")
    edge = " (on the edge of the lrs tried)" if on_edge else ""
    centred = ("" if centre == best_lr
               else f" (centred on lr {centre:.3g}, between the best and its neighbours)")
    return (f"baseline tuned: lr {best_lr:.3g}{edge}, val {best.value:.4f}, best of {len(lrs)} "
            f"baseline trial(s) over lr {lrs[0]:.3g}-{lrs[-1]:.3g}; searching the SAM family "
            f"at {span}{centred}")


def searched(trial: FrozenTrial) -> bool:
    """Whether the search chose ``trial``'s configuration (sampled, a neighbour of its best
    family trial, or that trial under a cheaper schedule), as opposed to the baseline grid and the warm starts it enqueues as given."""
    return ("fixed_params" not in trial.system_attrs
            or trial.user_attrs.get(ORIGIN_ATTR) in ORIGINS)
