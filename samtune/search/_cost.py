"""Cost: what a configuration's training costs, as a multiple of the baseline's.

Two measures, both step-time ratios taken on the machine that trained both sides:

- a trial's ``cost`` user attribute: its ``step_time`` over the median ``step_time`` of the
  study's completed baseline (sgd) trials on the same host (any host's when that one ran
  none; None while no baseline trial has completed). The staged search runs the baseline
  first, so the family's trials have one. A baseline trial counts itself.
- a confirmation record's cost: its ``step_time`` over the confirmed baseline's, run side by
  side (``cost_multiplier`` in the recommendation). The verdict's ``--max-cost`` uses this one.

A trial whose perturb schedule (late, stochastic, periodic) skips steps also records
``perturbed_share``: the share of its steps that took the perturbed pass, counted by the
training loop (``TrainResult.perturbed_steps``), and its step time weighs both kinds of step
by their share (``samtune.train._loop.typical_step_time``).

``frontier``: the configurations that no other beats on both gain and cost.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from samtune.search._evidence import Z, decide

COST_ATTR = "cost"  # trial user attribute: step_time over the baseline trials' median
SHARE_ATTR = "perturbed_share"  # trial user attribute: share of steps that perturbed


def _is_baseline(t: FrozenTrial) -> bool:
    return t.user_attrs.get("config", {}).get("variant") == "sgd"


def baseline_step_time(trials: Iterable[FrozenTrial], host: str | None = None,
                       own: float | None = None) -> float | None:
    """Median ``step_time`` of the completed baseline trials, those of ``host`` when it ran
    any (with ``own``, a baseline trial's own step time, counted among them); None when
    there is none.

    >>> from optuna.trial import create_trial
    >>> sgd = {"config": {"variant": "sgd"}}
    >>> ts = [create_trial(value=0.5, user_attrs={**sgd, "step_time": s}) for s in (1.0, 3.0, 2.0)]
    >>> baseline_step_time(ts), baseline_step_time(ts, own=6.0)
    (2.0, 2.5)
    """
    times = [(t.user_attrs.get("worker_host"), t.user_attrs["step_time"]) for t in trials
             if t.state == TrialState.COMPLETE and _is_baseline(t)
             and _finite(t.user_attrs.get("step_time"))]
    everyone = [s for _, s in times]
    mine = [s for h, s in times if h == host] if host is not None else everyone
    if own is not None and _finite(own):  # a baseline trial: measured against its own host's
        return statistics.median([*mine, own])
    chosen = mine or everyone
    return statistics.median(chosen) if chosen else None


def trial_cost(step_time: float, base: float | None) -> float | None:
    """``step_time / base`` (None when either is unknown)."""
    if base is None or not _finite(step_time) or not base > 0:
        return None
    return step_time / base


def cost_attrs(trials: Iterable[FrozenTrial], config: Any, result: Any,
               host: str | None = None) -> dict[str, float]:
    """The cost user attributes of a trial that trained ``config`` (a ``SAMConfig``) into
    ``result`` (a ``TrainResult``) on ``host``, given the study's ``trials``: ``cost``
    (absent while no baseline trial has completed) and, for a perturb schedule that skips
    steps, ``perturbed_share``."""
    step_time = getattr(result, "step_time", math.nan)
    own = None if config.perturbs else step_time
    out: dict[str, float] = {}
    cost = trial_cost(step_time, baseline_step_time(trials, host, own))
    if cost is not None:
        out[COST_ATTR] = cost
    steps = getattr(result, "steps", 0)
    if config.perturbs and config.perturb != "always" and steps:
        out[SHARE_ATTR] = getattr(result, "perturbed_steps", 0) / steps
    return out


def cost_of_trial(t: FrozenTrial, base: float | None) -> float | None:
    """The trial's ``cost`` attribute, else its step time over ``base`` (a trial that finished
    before any baseline trial did)."""
    cost = t.user_attrs.get(COST_ATTR)
    if _finite(cost):
        return float(cost)
    return trial_cost(t.user_attrs.get("step_time", math.nan), base)


def val_margin(best: FrozenTrial, val_size: int | None) -> float:
    """How far below the best trial's value a trial is within noise: ``Z`` binomial standard
    errors of a validation accuracy, ``Z * sqrt(p (1 - p) / val_size)`` with p the best value.

    For a metric other than accuracy the same accuracy-style margin is used: p is the best
    value when it lies in [0, 1] (balanced accuracy, macro F1, worst-class recall), else the
    trial's validation accuracy (a cost's utility is negative). It is a rough size of the
    validation noise, not that metric's own standard error. No ``val_size``: 0.

    >>> from optuna.trial import create_trial
    >>> round(val_margin(create_trial(value=0.9), 100), 4)
    0.06
    """
    if not val_size:
        return 0.0
    p = best.value
    if p is None or not 0.0 <= p <= 1.0:
        p = best.user_attrs.get("final_val_acc", 0.5)
    return Z * math.sqrt(max(0.0, p * (1.0 - p)) / val_size)


def record_cost(c: dict[str, Any], baseline: dict[str, Any]) -> float:
    """A confirmation record's step time over the baseline record's (NaN when unknown)."""
    base = baseline.get("step_time", math.nan)
    return c["step_time"] / base if _finite(base) and base > 0 else math.nan


def admissible(confirmed: list[dict[str, Any]], max_cost: float | None) -> list[dict[str, Any]]:
    """The confirmation records the answer may come from: the baseline, and the SAM-family
    ones whose measured cost is at most ``max_cost`` (all of them without it; an unmeasured
    cost is not above it)."""
    if max_cost is None:
        return list(confirmed)
    baseline = next(c for c in confirmed if c["config"]["variant"] == "sgd")
    return [c for c in confirmed
            if c is baseline or not record_cost(c, baseline) > max_cost]


def frontier(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points (dicts with ``gain`` and ``cost``) that no other point dominates: none has
    a gain at least as high at a cost at least as low, better in one of the two. Points with
    an unknown gain or cost are left out; the rest come cheapest first.

    >>> pts = [{"n": "a", "gain": 0.0, "cost": 1.0}, {"n": "b", "gain": 0.02, "cost": 1.4},
    ...        {"n": "c", "gain": 0.01, "cost": 2.0}, {"n": "d", "gain": 0.03, "cost": 2.6}]
    >>> [p["n"] for p in frontier(pts)]
    ['a', 'b', 'd']
    """
    known = [p for p in points if _finite(p.get("gain")) and _finite(p.get("cost"))]

    def beaten(p: dict[str, Any]) -> bool:
        return any(q["gain"] >= p["gain"] and q["cost"] <= p["cost"]
                   and (q["gain"] > p["gain"] or q["cost"] < p["cost"]) for q in known)

    return sorted((p for p in known if not beaten(p)), key=lambda p: (p["cost"], -p["gain"]))


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def cheapest_near(fam: list[dict[str, Any]], best: dict[str, Any], evs: dict[int, dict[str, Any]],
                  baseline: dict[str, Any], gap_of: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The configuration to use once ``best`` (a record of ``fam``, the SAM-family records
    the answer may come from) was judged ``use``: the cheapest record of ``fam`` whose own
    gain over the baseline is beyond its noise (``decide`` says ``use`` at the seeds it has)
    and within the noise of the best's: best gain minus its gain <= ``Z`` x the standard
    error of their paired difference (``gap_of(record, best)``: ``gain_evidence`` of the
    record against the best). Ties go to the better record; the best always qualifies.

    ``evs``: each record's ``gain_evidence`` over the baseline, by ``id``. Returns the record
    and, when it is not the best, ``{gap, se, bound}`` of its difference to the best."""
    best_gain = evs[id(best)]["gain"]
    chosen, gap = best, None
    for c in fam:  # best first: a cheaper record must be strictly cheaper
        if c is best:
            continue
        ev = evs[id(c)]
        if decide(ev, min(ev["seeds"])) != "use":
            continue
        diff = gap_of(c, best)
        g = best_gain - ev["gain"]
        if not (math.isfinite(diff["se"]) and g <= Z * diff["se"]):
            continue
        if _cost_key(c, baseline) < _cost_key(chosen, baseline):
            chosen, gap = c, {"gap": g, "se": diff["se"], "bound": Z * diff["se"]}
    return chosen, gap


def _cost_key(c: dict[str, Any], baseline: dict[str, Any]) -> float:
    cost = record_cost(c, baseline)
    return cost if math.isfinite(cost) else math.inf
