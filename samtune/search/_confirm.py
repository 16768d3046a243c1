"""Confirmation: retrain the best configurations with several seeds, judge on the test split.

``confirm`` trains every candidate with the first seeds; ``settle`` then adds seeds to the
baseline and the SAM-family candidate best on validation (``judged_sam``), one at a time,
while the verdict is open (``_evidence.decide``) and the budget allows. Candidates are ranked
and judged on the search's metric (accuracy unless ``--metric`` says otherwise)."""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from samtune.metrics import Metric
from samtune.optim import SAMConfig
from samtune.search._cost import baseline_step_time, cost_of_trial, val_margin
from samtune.search._evidence import Z, decide, design_looks, gain_evidence, joint_z
from samtune.search._metric import is_accuracy, scale_of
from samtune.search._objective import run_config
from samtune.search._progress import EpochProgress
from samtune.train import TrainConfig, predict_classes

CONFIRM_SEED_OFFSET = 100_000  # confirmation seeds never coincide with search-trial seeds
FALLBACK = "untuned fallback baseline"  # how a baseline no trial tuned is described


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def pick_candidates(
    study: optuna.Study, top_k: int, base_fallback: dict[str, Any], *,
    val_size: int | None = None, max_cost: float | None = None,
) -> list[tuple[SAMConfig, FrozenTrial | None]]:
    """k distinct completed SAM-family configurations, the best by value and the best by
    validation loss in turn (``by_value_and_loss``), then the cheapest one within noise of the
    best when it is not among them, then the best at another lr (``other_lr``) when there is
    one, plus the best baseline trial and the better of its nearest lrs tried on either side
    (``other_baseline``; a baseline never takes one of the k places; ``choose_baseline`` keeps
    the one that tests better).

    Another lr: SAM's best lr is often not the baseline's (on the bank: from a quarter to four
    times it), and one seed on the validation split does not resolve lrs a factor 2 apart; the
    confirmation, on all the data with several seeds, does.

    Within noise: a validation value at most ``_cost.val_margin`` (2 binomial standard errors
    on ``val_size`` examples; no ``val_size``: none is added) below the best SAM-family
    value; cheapest by the trials' ``cost``. ``max_cost``: trials whose cost is above it are
    no candidates (an unknown cost is not above it).

    With no completed baseline trial, the baseline is the best trial's base optimizer alone:
    an untuned fallback (its trial is None; ``confirm`` describes it as such).
    """
    done = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
         if "config" in t.user_attrs),
        key=lambda t: t.value, reverse=True,
    )
    base_time = baseline_step_time(done)
    fam = [t for t in done if t.user_attrs["config"]["variant"] != "sgd"
           and not (max_cost is not None and (cost_of_trial(t, base_time) or 0.0) > max_cost)]
    picked: list[tuple[SAMConfig, FrozenTrial | None]] = []
    seen: set[str] = set()

    def place(t: FrozenTrial | None) -> None:
        if t is not None and (k := _key(t.user_attrs["config"])) not in seen:
            seen.add(k)
            picked.append((SAMConfig.from_dict(t.user_attrs["config"]), t))

    for t in by_value_and_loss(fam):
        if len(picked) < top_k:
            place(t)
    place(cheapest_near_best(fam, val_size, base_time))
    place(other_lr(fam, [t for _, t in picked]))
    bases = [t for t in done if t.user_attrs["config"]["variant"] == "sgd"]
    if bases:
        place(bases[0])
        place(other_baseline(bases))
    else:
        best = SAMConfig.from_dict(done[0].user_attrs["config"]) if done else None
        base_kwargs = dict(best.base_kwargs) if best else dict(base_fallback)
        picked.append((SAMConfig(variant="sgd", rho=0.0, base=best.base if best else "sgd",
                                 base_kwargs=base_kwargs), None))
    return picked


def by_value_and_loss(fam: list[FrozenTrial]) -> list[FrozenTrial]:
    """The distinct configurations of ``fam`` (best value first; each by its best-valued
    trial) in the order: the best by value, the best by final validation loss (lowest), the
    second by value, the second by loss, ..., each at its first place. Trials that recorded
    no loss are placed by value only.

    One seed on a small validation split ranks configurations a point or two apart by noise;
    the validation loss, a proper scoring rule on every example's predicted probability, ranks
    the top of a search better, the value is what the user asked for (``benchmarks/
    candidates.py``, rule ``raw+loss``; the decision benchmark in ``benchmarks/RESULTS.md``)."""
    distinct: dict[str, FrozenTrial] = {}
    for t in fam:
        distinct.setdefault(_key(t.user_attrs["config"]), t)
    by_value = list(distinct.values())
    by_loss = sorted((t for t in by_value if _finite(t.user_attrs.get("final_val_loss"))),
                     key=lambda t: t.user_attrs["final_val_loss"])
    out: list[FrozenTrial] = []
    for pair in itertools.zip_longest(by_value, by_loss):
        for t in pair:
            if t is not None and all(t is not o for o in out):
                out.append(t)
    return out


OTHER_LR = 1.5  # an lr this factor or more from every candidate's is another lr


def _lr(t: FrozenTrial) -> float | None:
    lr = t.user_attrs["config"].get("base_kwargs", {}).get("lr")
    return float(lr) if _finite(lr) and lr > 0 else None


def other_lr(fam: list[FrozenTrial], picked: list[FrozenTrial]) -> FrozenTrial | None:
    """The best SAM-family trial of ``fam`` (best value first) whose lr lies a factor
    ``OTHER_LR`` or more from every picked candidate's lr (None: no such trial)."""
    lrs = [lr for t in picked if (lr := _lr(t)) is not None]
    for t in fam:
        lr = _lr(t)
        if lr is not None and all(abs(math.log(lr / c)) >= math.log(OTHER_LR) for c in lrs):
            return t
    return None


def other_baseline(bases: list[FrozenTrial]) -> FrozenTrial | None:
    """Of the completed baseline trials ``bases`` (best value first), the better by value of
    the best's nearest lrs tried a factor ``OTHER_LR`` or more below it and above it (a tie:
    the nearer in log lr); None when there is neither.

    One seed on a small or noisy validation split does not tell the grid's best lr from its
    neighbour's (on the bank's noisy tasks they are 2-3 pp apart on test and tie on val); a
    baseline tuned a grid step off makes every SAM gain look larger than it is."""
    best = _lr(bases[0]) if bases else None
    if best is None:
        return None
    sides: dict[bool, tuple[float, FrozenTrial]] = {}
    for t in bases[1:]:
        lr = _lr(t)
        if lr is None or abs(math.log(lr / best)) < math.log(OTHER_LR):
            continue
        side, dist = lr > best, abs(math.log(lr / best))
        if side not in sides or dist < sides[side][0]:
            sides[side] = (dist, t)
    return min(sides.values(), key=lambda p: (-p[1].value, p[0]))[1] if sides else None


def choose_baseline(confirmed: list[dict[str, Any]], metric: Metric | None = None,
                    y_test: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``confirmed`` with one baseline record, and the other baseline records set aside.

    The search's tuned baseline (the first listed) is kept unless another beats it on the
    test split beyond the noise (its paired gain above ``gain_evidence``'s bound, z for the
    best of the others): a baseline chosen on the test split looks better than it is, by the
    luck of the choice, and a choice made only on a clear difference keeps that luck small
    while a grid step that the validation split could not resolve is still corrected."""
    bases = [c for c in confirmed if c["config"]["variant"] == "sgd"]
    if len(bases) < 2:
        return confirmed, []
    tuned, others = bases[0], bases[1:]
    keep = tuned
    for c in others:
        ev = gain_evidence(c, tuned, metric, y_test, candidates=len(others))
        if ev["gain"] > ev["bound"] and mean_utility(c, metric) > mean_utility(keep, metric):
            keep = c  # a NaN gain or bound (nothing to pair) compares False: no switch
    return ([c for c in confirmed if c["config"]["variant"] != "sgd" or c is keep],
            [c for c in bases if c is not keep])


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def cheapest_near_best(fam: list[FrozenTrial], val_size: int | None,
                       base_time: float | None = None) -> FrozenTrial | None:
    """Of ``fam`` (SAM-family trials, best value first), the cheapest whose value is within
    ``val_margin`` of the best one's (ties: the better value); None without ``val_size`` or
    without a known cost."""
    if not fam or not val_size:
        return None
    floor = fam[0].value - val_margin(fam[0], val_size)
    near = [(cost, -t.value, i, t) for i, t in enumerate(fam)
            if t.value >= floor and (cost := cost_of_trial(t, base_time)) is not None]
    return min(near)[3] if near else None


class Runner:
    """Trains confirmation seeds of a configuration and records what the verdict needs.

    ``metric``: what the verdict is judged on (None: accuracy); ``last_score`` holds the last
    seed's test score on it (NaN: diverged) when ``on_run`` is called.
    """

    def __init__(self, data: Any, train_config: TrainConfig, model_factory: Callable[[], nn.Module],
                 *, seed: int = 0, total: int = 0,
                 on_run: Callable[[int, int, SAMConfig, int, float], None] | None = None,
                 say: Callable[[str], None] | None = None, metric: Metric | None = None,
                 folds: Any = None) -> None:
        self.data, self.train_config, self.model_factory = data, train_config, model_factory
        self.seed, self.total, self.done, self.on_run, self.say = seed, total, 0, on_run, say
        self.metric, self.last_score = metric, float("nan")
        self.folds = folds  # samtune.data._folds.Folds: run s trains and tests on fold s

    def record(self, config: SAMConfig, trial: FrozenTrial | None) -> dict[str, Any]:
        """An empty confirmation record of ``config`` (``add_seed`` fills it)."""
        fallback = trial is None and config.variant == "sgd"
        return {
            "config": config.to_dict(),
            "description": f"{FALLBACK} {config.describe()}" if fallback else config.describe(),
            "tuned": not fallback,  # False: a baseline no search trial tuned
            "trial": trial.number if trial is not None else None,
            "val_accuracy": self._val_accuracy(trial),
            "val_metric": trial.value if trial is not None else None,  # the trial's reported value
            "test_accuracy": {"mean": float("nan"), "std": 0.0, "per_seed": []},
            "test_metric": {"mean": float("nan"), "std": 0.0, "per_seed": []},  # the metric's score
            "correct": [],  # per finite seed: which test examples it got right
            "pred": [],  # per finite seed: the class it predicts for each test example (int64)
            # per seed: its utility on the validation split (NaN: diverged), which chooses the
            # record the verdict judges (``judged_sam``) without looking at the test split
            "val_scores": [],
            "step_times": [], "step_time": float("nan"), "epochs": 0, "seconds": 0.0,
            # on folds: per run, each tested example's utility (None: diverged), and k
            "fold_runs": [] if self.folds is not None else None,
            "k": self.folds.k if self.folds is not None else None,
        }

    def _val_accuracy(self, trial: FrozenTrial | None) -> float | None:
        if trial is None:
            return None
        return trial.value if is_accuracy(self.metric) else trial.user_attrs.get("final_val_acc")

    def _score(self, model: nn.Module, x: Any, y: Any) -> float:
        """``model``'s utility on (``x``, ``y``) on the runner's metric (higher is better)."""
        pred = predict_classes(model, x, y, batch_size=self.train_config.eval_batch_size,
                               bf16=self.train_config.bf16)
        if is_accuracy(self.metric):
            return (pred == y.cpu()).double().mean().item()
        return self.metric.utility(y.cpu(), pred)

    def add_seed(self, rec: dict[str, Any]) -> float:
        """Train the record's next seed at full budget; its test accuracy (NaN: diverged)."""
        config, s = SAMConfig.from_dict(rec["config"]), len(rec["test_accuracy"]["per_seed"])
        self.done += 1
        self.total = max(self.total, self.done)
        run_seed = CONFIRM_SEED_OFFSET + self.seed * 1000 + s
        slow = ([EpochProgress(self.say, f"confirm {self.done}/{self.total}", self.train_config.epochs)]
                if self.say else [])
        data = self.data if self.folds is None else self.folds.dataset(self.data, s)[0]
        t0 = time.perf_counter()
        result = run_config(config, data, self.train_config, self.model_factory,
                            seed=run_seed, callbacks=slow)
        rec["seconds"] += time.perf_counter() - t0
        rec["epochs"] += result.epochs_trained
        acc = score = val = float("nan")
        utility = None
        y_val = getattr(data, "y_val", None)
        has_val = y_val is not None and len(y_val) > 0
        if not result.diverged:
            if has_val:
                val = self._score(result.model, data.x_val, y_val)
            pred = predict_classes(result.model, data.x_test, data.y_test,
                                   batch_size=self.train_config.eval_batch_size,
                                   bf16=self.train_config.bf16)
            rec.setdefault("pred", []).append(pred)
            rec["correct"].append(pred == data.y_test.cpu())
            acc = rec["correct"][-1].sum().item() / max(1, rec["correct"][-1].numel())
            score = acc if is_accuracy(self.metric) else self.metric.score(data.y_test, pred)
            if rec.get("fold_runs") is not None:  # each tested example's utility
                utility = (rec["correct"][-1].double() if is_accuracy(self.metric) else
                           torch.as_tensor(self.metric.per_example(data.y_test, pred)))
        if rec.get("fold_runs") is not None:
            rec["fold_runs"].append(utility)
            if utility is not None:  # the labels this seed's predictions are for
                rec.setdefault("labels", []).append(data.y_test.cpu())
        if has_val:  # without validation examples, the verdict's record is chosen on test
            rec.setdefault("val_scores", []).append(val)
        _add(rec["test_accuracy"], acc)
        _add(rec.setdefault("test_metric", {"mean": float("nan"), "std": 0.0, "per_seed": []}), score)
        self.last_score = score
        rec["step_times"].append(result.step_time)
        rec["step_time"] = statistics.median(rec["step_times"])
        if self.on_run:
            self.on_run(self.done, self.total, config, s, acc)
        return acc


def confirm(
    candidates: list[tuple[SAMConfig, FrozenTrial | None]],
    data: Any,
    train_config: TrainConfig,
    model_factory: Callable[[], nn.Module],
    *,
    seeds: int,
    seed: int = 0,
    on_run: Callable[[int, int, SAMConfig, int, float], None] | None = None,
    say: Callable[[str], None] | None = None,
    runner: Runner | None = None,
) -> list[dict[str, Any]]:
    """Train each candidate with ``seeds`` seeds at full budget; test accuracy per seed."""
    runner = runner or Runner(data, train_config, model_factory, seed=seed, on_run=on_run, say=say)
    runner.total += len(candidates) * seeds
    out = [runner.record(config, trial) for config, trial in candidates]
    for rec in out:
        for _ in range(seeds):
            runner.add_seed(rec)
        rec["first_look"] = seeds  # the sequential verdict's first look (_evidence.design_looks)
    return out


def _add(scores: dict[str, Any], value: float) -> None:
    """Append one seed's ``value`` (NaN: diverged) and update the mean and std of the finite ones."""
    scores["per_seed"].append(value)
    finite = [a for a in scores["per_seed"] if a == a]
    scores["mean"] = statistics.fmean(finite) if finite else float("nan")
    scores["std"] = statistics.stdev(finite) if len(finite) > 1 else 0.0


def mean_utility(c: dict[str, Any], metric: Metric | None = None) -> float:
    """A record's mean test utility on ``metric`` (mean accuracy for None or accuracy; minus
    the mean cost for a cost), and -inf when every seed diverged: higher ranks first."""
    if is_accuracy(metric):
        m = c["test_accuracy"]["mean"]
        return m if m == m else -1.0
    m = c["test_metric"]["mean"]
    if m != m:
        return -math.inf
    return m if metric.greater_is_better else -m


def val_utility(c: dict[str, Any]) -> float | None:
    """A record's mean validation utility over its first look's seeds (``first_look``: the
    seeds ``confirm`` gave every candidate; later seeds go to one record only, so they do not
    enter the choice); -inf when each of them diverged, None when it has no validation scores
    (a record from before they were kept, or data with no validation examples)."""
    scores = c.get("val_scores") or []
    first = c.get("first_look") or len(scores)
    if not scores or first <= 0:
        return None
    finite = [v for v in scores[:first] if v == v]
    return statistics.fmean(finite) if finite else -math.inf


def judged_sam(confirmed: list[dict[str, Any]],
               metric: Metric | None = None) -> tuple[dict[str, Any] | None, str]:
    """The SAM-family record the verdict judges, and what chose it: ``"validation"`` or
    ``"test"`` (None, ``"test"`` when none was confirmed).

    On validation: the record with the best first-look validation utility (``val_utility``;
    ties: the better search value, then the configuration's key, so the answer does not depend
    on the records' order). The test split did not choose it, so its gain is judged as one
    comparison's (``Z``), not as the best of several noisy gains (``joint_z``): the choice
    among candidates on the test split is where a claimed gain's winner's curse comes from.
    When a record has no validation utility, the one chosen on test: the most seeds
    (``settle`` added them to the judged one), then the best mean test utility."""
    fam = [c for c in confirmed if c["config"]["variant"] != "sgd"]
    if not fam:
        return None, "test"
    vals = [val_utility(c) for c in fam]
    if all(v is not None for v in vals):
        def rank(i: int) -> tuple[float, float, str]:
            searched = fam[i].get("val_metric")  # the trial's value: the study maximizes it
            return vals[i], searched if _finite(searched) else -math.inf, _key(fam[i]["config"])
        return fam[max(range(len(fam)), key=rank)], "validation"
    return min(fam, key=lambda c: (-len(c["test_accuracy"]["per_seed"]),
                                   -mean_utility(c, metric))), "test"


def judge(judged: dict[str, Any], chosen_on: str, baseline: dict[str, Any],
          metric: Metric | None, y_test: Any, looks: tuple[int, int] | None,
          joint: tuple[float, str]) -> dict[str, Any]:
    """The evidence the verdict reads for ``judged`` (``judged_sam``'s record):
    ``gain_evidence`` over ``baseline``, with ``chosen_on``. ``joint``: ``joint_z`` of the
    SAM-family records confirmed, (z, method).

    Chosen on test, its z is that of the best of them (``joint``). Chosen on validation,
    ``use`` needs one comparison's z (``Z``), and the futility stop keeps the best of
    several's (``futility_z``, read by ``_evidence.decide``): a keep-baseline only lowers the
    chance of a false ``use``, and at ``Z`` a small positive gain would stay open where the
    best of several's already calls the decision futile (on the bank: three digits rows where
    SAM does not help went keep-baseline -> inconclusive)."""
    z, method = joint
    if chosen_on != "validation":
        return {**gain_evidence(judged, baseline, metric, y_test, z=z, z_method=method,
                                first_and_most=looks), "chosen_on": chosen_on}
    ev = gain_evidence(judged, baseline, metric, y_test, z=Z, z_method="chosen on validation",
                       first_and_most=looks)
    return {**ev, "futility_z": z, "chosen_on": chosen_on}


def settle(
    confirmed: list[dict[str, Any]], runner: Runner, *, max_seeds: int,
    afford: Callable[[int], bool] = lambda runs: True,
    say: Callable[[str], None] | None = None,
) -> str:
    """Add seeds to the baseline and the SAM-family record the verdict judges (``judged_sam``)
    while the verdict is open (judged on ``runner.metric``, with ``judge``'s evidence).

    Returns why it stopped: ``decided``, ``max seeds`` or ``budget`` (``afford(2)`` said no).
    """
    metric = getattr(runner, "metric", None)
    y_test = runner.data.y_test if not is_accuracy(metric) else None
    baseline = next(c for c in confirmed if c["config"]["variant"] == "sgd")
    best, chosen_on = judged_sam(confirmed, metric)
    if best is None:
        return "decided"
    fam = [c for c in confirmed if c["config"]["variant"] != "sgd"]
    looks = design_looks([*fam, baseline], max_seeds)
    while True:
        ev = judge(best, chosen_on, baseline, metric, y_test, looks, joint_z(fam, baseline, metric))
        if decide(ev, max_seeds) != "open":
            return "decided"
        seeds = min(len(best["test_accuracy"]["per_seed"]),
                    len(baseline["test_accuracy"]["per_seed"]))
        if seeds >= max_seeds:
            return "max seeds"
        if not afford(2):
            return "budget"
        if say:
            say(f"  open: {scale_of(metric).signed(ev['gain'])} against a bound of "
                f"{scale_of(metric).amount(ev['bound'])} after {seeds} seed(s); seed {seeds + 1} "
                f"of at most {max_seeds}")
        for rec in (baseline, best):
            while len(rec["test_accuracy"]["per_seed"]) <= seeds:
                runner.add_seed(rec)

