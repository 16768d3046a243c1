"""``Recommendation``: the search's answer, with the evidence behind it.

Schema (``recommendation.json`` / ``.yaml``, and the study's ``recommendation`` user attribute):
verdict ("use", "keep-baseline" or "inconclusive": the gain is neither shown nor ruled out
within the confirmation's seeds; config is then the baseline), summary (one sentence), config
(SAMConfig dict to apply), test_accuracy {mean, std, per_seed}, baseline {config, test_accuracy,
tuned (False: no baseline trial completed, the baseline is an untuned fallback; absent in older
files), tuning {trials, completed, lr_tried, lr, lr_on_edge, family_lr, confirmed}: how the staged search tuned it, the lr the SAM family was centred on, and the baseline lrs the confirmation trained, the better on test chosen},
gain (mean test accuracy of config minus the baseline's; 0 unless "use"), evidence (the best
SAM-family candidate's gain, se, bound = z * se, test_se, seed_se, n_test, seeds, max_seeds,
stopped, seeds_to_settle for "inconclusive", stability; see ``_evidence``; empty when no
SAM-family configuration was confirmed; with "use" and a cheaper configuration chosen, chosen:
its candidate, gain, se, bound, seeds, gap to the best's gain with gap_se and gap_bound, cost
and stability), cost_multiplier (step time of config over the baseline's, measured side by
side), candidates (every confirmed configuration, with its gain over the baseline, bound and
cost_multiplier), frontier (the confirmed configurations, the baseline included, that no other
beats on both gain and cost, cheapest first: description, config, gain, bound, cost), best
(description, gain, cost of the best SAM-family candidate when "use" chose a cheaper one within
its noise; else empty), max_cost (the --max-cost the answer was held to, or None), left_out (a
better configuration above max_cost: description, config, where "confirmation" with its gain or
"search" with its trial, val_metric, cost; else empty), train (epochs, batch_size, model), dataset {fingerprint, path, classes, split_sizes, ...}, study {name, storage, n_trials,
n_complete, n_pruned, n_complete_searched (completed trials the search chose: sampled, or
neighbours of its best family trial; not the baseline grid or the warm starts)}, compute {search_epochs, confirmation_epochs, epochs}, samtune_version.

The metric (``--metric``; accuracy by default): metric {name, description, greater_is_better},
test_metric {mean, std, per_seed} of config on it (the score: for a cost the mean cost, lower
is better; accuracy's equals test_accuracy), per_class_recall (K floats, in the order of
dataset.classes) and confusion (K x K counts, row true class, column predicted class) of
config, the same three keys in baseline, test_metric and val_metric (the trial's reported
value) in each candidate. confusion is summed over the configuration's finite confirmation
seeds, so it adds up to the test size times those seeds, and per_class_recall is the recall of
that sum (the mean of the seeds' recalls). With a metric, gain and the evidence's gain, se,
bound, test_se and seed_se are in the metric's utility (the score, or minus the mean cost):
for a cost a gain is a drop of the mean cost. Files written before ``--metric`` have none of
these keys (empty) and were judged on accuracy.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import TrialState

import samtune
from samtune.errors import SamtuneError
from samtune.metrics import Metric, confusion
from samtune.optim import SAMConfig
from samtune.search._confirm import judge, judged_sam, mean_utility
from samtune.search._cost import (
    admissible,
    baseline_step_time,
    cheapest_near,
    cost_of_trial,
    frontier,
    record_cost,
)
from samtune.search._evidence import design_looks, final, gain_evidence, joint_z, seeds_to_settle
from samtune.search._metric import Scale, is_accuracy, metric_label, scale_of
from samtune.search._stages import STAGE_ATTR, searched

VERDICTS = ("use", "keep-baseline", "inconclusive")
_PP = Scale()  # gains in percentage points (every metric but a cost)


@dataclass
class Recommendation:
    """Which SAM configuration, if any, to use on a data set, and the evidence.

    >>> rec = Recommendation.from_dict(Recommendation.example().to_dict())
    >>> rec.verdict, rec.config.variant
    ('use', 'sam')
    """

    verdict: str
    config: SAMConfig
    test_accuracy: dict[str, Any]
    baseline: dict[str, Any]
    gain: float
    cost_multiplier: float
    summary: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)
    compute: dict[str, Any] = field(default_factory=dict)
    samtune_version: str = ""
    metric: dict[str, Any] = field(default_factory=dict)  # {name, description, greater_is_better}
    test_metric: dict[str, Any] = field(default_factory=dict)  # config's {mean, std, per_seed}
    per_class_recall: list[float] = field(default_factory=list)  # config's, of the summed confusion
    confusion: list[list[int]] = field(default_factory=list)  # config's, summed over its seeds
    # confirmed configurations no other beats on both gain and cost, cheapest first
    frontier: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)  # the best, when a cheaper one is used
    max_cost: float | None = None  # --max-cost the answer was held to (None: no limit)
    left_out: dict[str, Any] = field(default_factory=dict)  # a better one above max_cost

    @property
    def baseline_config(self) -> SAMConfig:
        return SAMConfig.from_dict(self.baseline["config"])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        return json.loads(json.dumps(d))  # plain JSON types only

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recommendation:
        try:
            d = dict(d)
            d["config"] = SAMConfig.from_dict(d["config"])
            rec = cls(**d)
        except (KeyError, TypeError) as exc:
            raise SamtuneError(f"not a samtune recommendation ({exc}); produce one with 'samtune search'.") from None
        if rec.verdict not in VERDICTS:
            raise SamtuneError(f"unknown verdict {rec.verdict!r}; expected one of {VERDICTS}.")
        return rec

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``recommendation.json`` and ``recommendation.yaml`` atomically."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SamtuneError(f"cannot create output directory {str(out)!r} ({exc.strerror}); pass --out with a writable folder.") from None
        d = self.to_dict()
        paths = (out / "recommendation.json", out / "recommendation.yaml")
        texts = (json.dumps(d, indent=2) + "\n", yaml.safe_dump(d, sort_keys=False))
        for path, text in zip(paths, texts):
            fd, tmp = tempfile.mkstemp(dir=out, prefix=".tmp-")
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        return paths

    @classmethod
    def load(cls, path: str | Path) -> Recommendation:
        path = Path(path)
        if path.is_dir():
            path = path / "recommendation.json"
        try:
            text = path.read_text()
        except OSError as exc:
            raise SamtuneError(f"cannot read recommendation {str(path)!r} ({exc.strerror}).") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SamtuneError(f"{str(path)!r} is not valid JSON/YAML ({str(exc).splitlines()[0]}).") from None
        if not isinstance(data, dict):
            raise SamtuneError(f"{str(path)!r} does not hold a recommendation mapping.")
        return cls.from_dict(data)

    @classmethod
    def example(cls) -> Recommendation:
        acc = {"mean": 0.95, "std": 0.004, "per_seed": [0.95, 0.946, 0.954]}
        return cls("use", SAMConfig(variant="sam"), acc,
                   {"config": SAMConfig(variant="sgd").to_dict(),
                    "test_accuracy": {"mean": 0.94, "std": 0.003, "per_seed": [0.94, 0.937, 0.943]}},
                   gain=0.01, cost_multiplier=2.0)


def build_recommendation(
    study: optuna.Study, confirmed: list[dict[str, Any]], dataset: Any, train_config: Any,
    model_name: str, storage_url: str, data: str, *, max_seeds: int | None = None,
    stopped: str = "decided", metric: Metric | None = None, max_cost: float | None = None,
    other_bases: Sequence[dict[str, Any]] = (),
) -> Recommendation:
    """State the verdict on the SAM-family candidate ``_confirm.judged_sam`` chooses (the best
    on validation over the first confirmation seeds; by mean test ``metric`` when the records
    have no validation scores; None: accuracy) against the baseline (``_evidence``;
    ``_confirm.judge``). ``max_seeds``: the most seeds the
    confirmation was allowed (None: the seeds it ran); ``stopped``: why ``settle`` stopped
    adding them. Confusion matrices need the records' ``pred`` and ``dataset.y_test``.

    When the verdict is ``use``, the configuration to use is the cheapest candidate whose
    gain is beyond its own noise and within the noise of the best's (``_cost.cheapest_near``).
    ``max_cost``: only candidates at most that multiple of the baseline's measured cost are
    judged or chosen; ``left_out`` names a better one above it. ``other_bases``: baseline
    records confirmed besides ``confirmed``'s and not chosen (``_confirm.choose_baseline``):
    the baseline's ``tuning`` lists every confirmed lr, and their runs count in ``compute``."""
    words = _Words(metric)
    y_test = getattr(dataset, "y_test", None)
    baseline = next(c for c in confirmed if c["config"]["variant"] == "sgd")
    ranked = sorted(confirmed, key=lambda c: -mean_utility(c, metric))
    allowed = admissible(ranked, max_cost)
    # the record ``settle`` judged (and added seeds to) is the one judged here, even when an
    # extra seed lowered its mean below another's: choosing again on test would reward luck
    best_sam, chosen_on = judged_sam(allowed, metric)
    fam = sorted((c for c in allowed if c["config"]["variant"] != "sgd"),
                 key=lambda c: (c is not best_sam, -len(c["test_accuracy"]["per_seed"]),
                                -mean_utility(c, metric)))
    # the others, when cheaper, must clear the best of len(fam) noisy gains' z (joint_z)
    z, z_method = joint_z(fam, baseline, metric)
    looks = design_looks([*fam, baseline], max_seeds) if fam else None
    evs = {id(c): gain_evidence(c, baseline, metric, y_test, z=z, z_method=z_method,
                                first_and_most=looks)
           for c in ranked if c["config"]["variant"] != "sgd"}
    if best_sam is not None:
        evs[id(best_sam)] = judge(best_sam, chosen_on, baseline, metric, y_test, looks, (z, z_method))
    which = ("the SAM-family configuration best on validation" if chosen_on == "validation"
             else "the best SAM-family configuration")
    evidence: dict[str, Any] = {}
    verdict, chosen, gain, gap = "keep-baseline", baseline, 0.0, None
    tuned = baseline.get("tuned", True)
    if best_sam is not None:
        ev = evs[id(best_sam)]
        seeds = min(ev["seeds"])
        allowed_seeds = seeds if stopped == "budget" or max_seeds is None else max(max_seeds, seeds)
        verdict = final(ev, allowed_seeds)
        evidence = {"candidate": best_sam["description"], "design": "test split", **ev,
                    "max_seeds": allowed_seeds, "stopped": stopped}
        if verdict == "use":
            chosen, gap = cheapest_near(fam, best_sam, evs, baseline,
                                        lambda c, b: gain_evidence(c, b, metric, y_test))
            gain = evs[id(chosen)]["gain"]
        elif verdict == "inconclusive":
            evidence["seeds_to_settle"] = seeds_to_settle(ev)
    cost = record_cost(chosen, baseline)
    keep = (f"keep the tuned baseline ({baseline['description']})" if tuned else
            f"keep the baseline, an {baseline['description']} (no baseline trial completed, "
            "so its learning rate is the best trial's; rerun with more --trials to tune it)")
    if verdict == "use":
        chosen_ev = evs[id(chosen)]
        noise = _noise_text(chosen_ev, words.scale)
        against = "baseline" if tuned else "the untuned fallback baseline"
        summary = f"use {chosen['description']}: {words.scale.signed(gain)} {_at(cost)}"
        if chosen is not best_sam:
            summary += (f" (best: {best_sam['description']} {words.scale.signed(ev['gain'])} "
                        f"{_times(record_cost(best_sam, baseline))})")
        summary += (f"; test {words.label} {words.mean(chosen):.4f} vs {against} "
                    f"{words.mean(baseline):.4f} ({noise})")
        stable = stability(study, chosen["config"], _val_value(baseline))
        if stable.get("sharp"):
            summary += (f"; warning: the {stable['n']} searched neighbour(s) at rho x0.5-2 or "
                        f"another m all ended below the baseline's validation {words.label}, so "
                        "the gain sits on a sharp ridge of rho and m")
        if gap is not None:
            evidence["chosen"] = _plain({
                "candidate": chosen["description"], **{k: chosen_ev[k] for k in
                                                       ("gain", "se", "bound", "seeds")},
                "gap": gap["gap"], "gap_se": gap["se"], "gap_bound": gap["bound"],
                "cost": _round(cost), "stability": stable})
    elif verdict == "inconclusive":
        noise = _noise_text(evidence, words.scale)
        summary = (f"inconclusive: {best_sam['description']} scored {words.mean(best_sam):.4f} vs the "
                   f"baseline's {words.mean(baseline):.4f}{words.on}, "
                   f"{words.scale.signed(evidence['gain'])}, not above the {noise}; {keep} for now; "
                   f"{_settle_text(evidence, words.scale)}")
    else:
        noise = _noise_text(evidence, words.scale) if evidence else ""
        if best_sam is None:
            why = "no SAM-family configuration was confirmed"
            if max_cost is not None:
                why = f"no SAM-family configuration within --max-cost {max_cost:g} was confirmed"
        elif not math.isfinite(evidence["gain"]):
            why = f"every confirmation seed of {best_sam['description']} diverged"
        elif evidence["gain"] < 0:
            why = (f"{which} ({best_sam['description']}) scored "
                   f"{words.mean(best_sam):.4f}{words.on}, {words.scale.amount(-evidence['gain'])} "
                   f"worse than the baseline ({noise})")
        else:
            why = (f"{which} ({best_sam['description']}) scored "
                   f"{words.mean(best_sam):.4f}{words.on}, {words.scale.signed(evidence['gain'])}, "
                   f"not above the {noise}, and too small to clear it with "
                   f"{evidence['max_seeds']} seeds")
        summary = f"SAM does not help here: {keep}; {why}"
    left_out = _left_out(study, ranked, allowed, best_sam, evs, baseline, max_cost, metric)
    if left_out:
        summary += _left_out_text(left_out, max_cost, words)
    trials = study.get_trials(deepcopy=False)
    search_epochs = sum(len(t.user_attrs.get("history", [])) for t in trials)
    confirm_epochs = sum(c["epochs"] for c in [*confirmed, *other_bases])
    if best_sam is not None:
        evidence["stability"] = stability(study, best_sam["config"], _val_value(baseline))
    classes = metric.num_classes if metric is not None else getattr(dataset, "num_classes", None)
    points = [{"description": c["description"], "config": c["config"],
               "gain": 0.0 if c is baseline else evs[id(c)]["gain"],
               "bound": None if c is baseline else _finite_or_none(evs[id(c)]["bound"]),
               "cost": _round(record_cost(c, baseline))} for c in ranked]
    return Recommendation(
        verdict=verdict,
        config=SAMConfig.from_dict(chosen["config"]),
        test_accuracy=chosen["test_accuracy"],
        baseline={"config": baseline["config"], "test_accuracy": baseline["test_accuracy"],
                  "tuned": tuned, "tuning": baseline_tuning(study) | (
                      {"confirmed": _confirmed_lrs(baseline, other_bases, words)} if other_bases else {}),
                  "test_metric": words.scores(baseline),
                  **_per_class(baseline, y_test, classes)},
        gain=gain,
        cost_multiplier=_round(cost),
        summary=summary,
        evidence=_plain(evidence),
        candidates=[{k: c[k] for k in ("description", "config", "trial", "val_accuracy", "test_accuracy")}
                    | {"val_metric": c.get("val_metric", c["val_accuracy"]),
                       "test_metric": words.scores(c), "cost_multiplier": pt["cost"],
                       "gain": _finite_or_none(pt["gain"]), "bound": pt["bound"]}
                    for c, pt in zip(ranked, points)],
        train={"epochs": train_config.epochs, "batch_size": train_config.batch_size, "model": model_name},
        dataset={**dataset.describe(), "path": data},
        study={"name": study.study_name, "storage": storage_url, "n_trials": len(trials),
               "n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
               "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
               "n_complete_searched": sum(t.state == TrialState.COMPLETE and searched(t)
                                          for t in trials)},
        compute={"search_epochs": search_epochs, "confirmation_epochs": confirm_epochs,
                 "epochs": search_epochs + confirm_epochs},
        samtune_version=samtune.__version__,
        metric=words.record(),
        test_metric=words.scores(chosen),
        **_per_class(chosen, y_test, classes),
        frontier=frontier(points),
        best=({"description": best_sam["description"], "gain": ev["gain"],
               "cost": _round(record_cost(best_sam, baseline))}
              if verdict == "use" and chosen is not best_sam else {}),
        max_cost=max_cost,
        left_out=left_out,
    )


def _left_out(study: optuna.Study, ranked: list[dict[str, Any]], allowed: list[dict[str, Any]],
              best: dict[str, Any] | None, evs: dict[int, dict[str, Any]],
              baseline: dict[str, Any], max_cost: float | None,
              metric: Metric | None) -> dict[str, Any]:
    """The better configuration ``max_cost`` left out, if any: a confirmed one above it that
    beat the best within it on the test split, else the search's best SAM-family trial by
    validation value when its trial cost is above it (it was not confirmed)."""
    if max_cost is None:
        return {}
    over = [c for c in ranked if c["config"]["variant"] != "sgd" and not any(c is a for a in allowed)]
    if over and (best is None or mean_utility(over[0], metric) > mean_utility(best, metric)):
        c = over[0]
        return {"description": c["description"], "config": c["config"], "where": "confirmation",
                "gain": _finite_or_none(evs[id(c)]["gain"]), "val_metric": _val_value(c),
                "cost": _round(record_cost(c, baseline))}
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    fam = [t for t in done if t.user_attrs.get("config", {}).get("variant") not in (None, "sgd")
           and t.value is not None]
    if not fam:
        return {}
    top = max(fam, key=lambda t: t.value)
    cost = cost_of_trial(top, baseline_step_time(done))
    if cost is None or not cost > max_cost or any(c["config"] == top.user_attrs["config"] for c in allowed):
        return {}
    return {"description": SAMConfig.from_dict(top.user_attrs["config"]).describe(),
            "config": top.user_attrs["config"], "where": "search", "trial": top.number,
            "gain": None, "val_metric": top.value, "cost": _round(cost)}


def _left_out_text(out: dict[str, Any], max_cost: float | None, words: _Words) -> str:
    """``; --max-cost 2 left out a better configuration, X (...) at 3.10x the baseline's cost``"""
    if out["where"] == "confirmation":
        how = f"{words.scale.signed(out['gain'])} on test" if out["gain"] is not None else "better on test"
    else:
        value = out["val_metric"] if not words.scale.cost else -out["val_metric"]
        how = f"validation {words.label} {value:.4f}, the search's best"
    return (f"; --max-cost {max_cost:g} left out a better configuration, {out['description']} "
            f"({how}, {_at(out['cost'])})")


def _times(cost: float | None) -> str:
    """``at 1.40x`` (or ``at an unmeasured cost``)."""
    return f"at {cost:.2f}x" if cost is not None and math.isfinite(cost) else "at an unmeasured cost"


def _at(cost: float | None) -> str:
    """``at 1.40x the baseline's cost`` (or ``at an unmeasured cost``)."""
    known = cost is not None and math.isfinite(cost)
    return f"{_times(cost)} the baseline's cost" if known else _times(cost)


def _round(x: float) -> float:
    return round(x, 3) if math.isfinite(x) else float("nan")


def _finite_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


class _Words:
    """How the summary names the metric and its values: accuracy's sentences as they always
    were; another metric by name (``test balanced accuracy 0.8100``), its gains in pp, a
    cost's as the change of the mean cost."""

    def __init__(self, metric: Metric | None) -> None:
        self.metric = metric
        self.accuracy = is_accuracy(metric)
        self.label = metric_label(metric)
        self.scale = scale_of(metric)
        self.on = "" if self.accuracy else f" {self.label}"  # after a bare score in a sentence

    def mean(self, c: dict[str, Any]) -> float:
        """The record's mean test score (accuracy: -1 when every seed diverged, as before)."""
        if self.accuracy:
            return _mean(c)
        return c["test_metric"]["mean"]

    def scores(self, c: dict[str, Any]) -> dict[str, Any]:
        """``{mean, std, per_seed}`` of the record on the metric (accuracy's own for accuracy)."""
        return c["test_accuracy"] if self.accuracy else c["test_metric"]

    def record(self) -> dict[str, Any]:
        m = self.metric or Metric("accuracy", 1)
        return {"name": m.name, "description": m.describe(), "greater_is_better": m.greater_is_better}


def _per_class(c: dict[str, Any], y_test: Any, classes: int | None) -> dict[str, Any]:
    """``confusion`` (summed over the record's finite seeds: it adds up to the test size times
    those seeds) and ``per_class_recall`` (of that sum); empty without predictions."""
    preds = c.get("pred") or []
    if not preds or y_test is None or not classes:
        return {}
    labels = c.get("labels") or [y_test] * len(preds)  # on folds: each run's own test fold
    counts = np.sum([confusion(y, p, classes) for y, p in zip(labels, preds)], axis=0)
    recall = np.divide(np.diagonal(counts), counts.sum(axis=1),
                       out=np.zeros(classes), where=counts.sum(axis=1) > 0)
    return {"confusion": counts.tolist(), "per_class_recall": recall.tolist()}


def _val_value(c: dict[str, Any]) -> float | None:
    """The record's trial value (its validation metric), the reference of ``stability``."""
    return c.get("val_metric", c.get("val_accuracy"))


def stability(study: optuna.Study, config: dict[str, Any],
              baseline_val: float | None) -> dict[str, Any]:
    """How the gain behaves near ``config``: the completed trials of the same variant at rho
    within a factor 2 (same m), or at the same rho (within 10%) with another m.

    ``sharp`` when there are neighbours and every one of them ended below the baseline's
    trial value (``baseline_val``: its validation accuracy, or metric): a small change of rho
    or m loses the gain. Each neighbour's ``val_accuracy`` is its trial value."""
    rho, m, variant = config.get("rho", 0.0), config.get("m"), config.get("variant")
    near = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        c = t.user_attrs.get("config", {})
        if (c == config or c.get("variant") != variant or not rho or t.value is None
                or c.get("perturb", "always") != config.get("perturb", "always")):
            continue  # another variant, or the same point under another perturb schedule
        ratio = c.get("rho", 0.0) / rho
        if (c.get("m") == m and 0.5 <= ratio <= 2.0) or (c.get("m") != m and 0.9 <= ratio <= 1.1):
            near.append({"rho": c.get("rho"), "m": c.get("m"), "val_accuracy": float(t.value)})
    out: dict[str, Any] = {"n": len(near), "neighbours": near}
    if near and baseline_val is not None:
        out["sharp"] = all(n["val_accuracy"] < baseline_val for n in near)
    return out


def baseline_tuning(study: optuna.Study) -> dict[str, Any]:
    """How the staged search tuned the baseline: trials, the lrs tried, the lr it chose and
    whether that lr sits on the edge of what was tried (empty for an unstaged study)."""
    record = study.user_attrs.get(STAGE_ATTR)
    if not record:
        return {}
    out = {"trials": record["baseline_trials"], "completed": record["baseline_completed"],
           "lr_tried": record["lr_tried"], "lr": record["baseline_lr"],
           "lr_on_edge": record["lr_on_edge"]}
    if "family_lr" in record:  # studies of an earlier samtune centred the family on lr
        out["family_lr"] = record["family_lr"]
    return out


def _confirmed_lrs(baseline: dict[str, Any], others: Sequence[dict[str, Any]],
                   words: _Words) -> list[dict[str, Any]]:
    """Each baseline lr the confirmation trained: lr, test_metric mean, seeds, chosen."""
    return [{"lr": c["config"].get("base_kwargs", {}).get("lr"),
             "test_metric": _finite_or_none(words.scores(c)["mean"]),
             "seeds": len(words.scores(c)["per_seed"]), "chosen": c is baseline}
            for c in (baseline, *others)]


def _noise_text(ev: dict[str, Any], scale: Scale = _PP) -> str:
    """``noise bound 1.20 pp (2 x SE 0.60 pp: test examples 0.40, seeds 0.45; 3 vs 3 seeds)``
    (for a cost, in cost units without ``pp``)."""
    if not math.isfinite(ev.get("se", math.nan)):
        return "noise bound unknown (nothing to pair on the test split)"
    seeds = ev["seeds"]
    seed = ("seed spread unknown with one seed" if ev["seed_se"] is None
            else f"seeds {scale.num(ev['seed_se'])}")
    test = f"test examples {scale.num(ev['test_se'])}" if math.isfinite(ev["test_se"]) else "no test pairing"
    runs = (f"{seeds[0]} fold runs each, {ev['n_test']} examples tested"
            if ev.get("design") == "folds" else f"{seeds[0]} vs {seeds[1]} seeds")
    return (f"noise bound {scale.amount(ev['bound'])} ({ev['z']:g} x SE {scale.amount(ev['se'])}: "
            f"{test}, {seed}; {runs}{_z_text(ev)})")


def _z_text(ev: dict[str, Any]) -> str:
    """Why z is above 2, when it is: the candidates, the looks, the seed terms' df."""
    why = []
    if ev.get("z_candidates", 2.0) > 2.0:
        why.append(f"the best of several candidates ({ev['z_candidates']:g})")
    looks = ev.get("looks", 1)
    if looks > 1:  # which look this is: the early ones ask for more
        why.append(f"look {ev['look']} of {looks}" if "look" in ev else f"{looks} looks")
    if ev.get("df") is not None:
        why.append(f"t at {ev['df']:.0f} df")
    return f"; z for {', '.join(why)}" if why else ""


def _settle_text(ev: dict[str, Any], scale: Scale = _PP) -> str:
    """What would settle an inconclusive verdict."""
    need = ev.get("seeds_to_settle")
    if need is None:
        where = "the data's" if ev.get("design") == "folds" else "the test split's"
        return (f"{where} own noise ({scale.amount(ev['test_se'])} per SE over "
                f"{ev['n_test']} examples) is too large for this gain: more data would settle it")
    why = "the time budget ended" if ev.get("stopped") == "budget" else f"{ev['max_seeds']} seeds were the most allowed"
    return (f"{why}; if the measured gain is the true one, about {need} seeds per side would "
            f"settle it (--max-confirm-seeds {need})")


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with NaN as None (strict JSON readers reject NaN)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def _mean(c: dict[str, Any]) -> float:
    m = c["test_accuracy"]["mean"]
    return m if m == m else -1.0
