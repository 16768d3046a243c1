"""Replay pruners over the bank's curves: compute saved, good cells lost, and what the signals say.

Every bank run stores its whole per-epoch record, so a search can be simulated without training:
a trial is a bank run, its epochs are fed to an in-memory Optuna study (``report`` + the
``history`` user attribute, as samtune's objective does) and the pruner decides as it would in a
real search. Many simulated searches per task, in seconds.

Per pruner and task, over ``--searches`` simulated searches of ``--trials`` trials (the search's
five warm-start-like cells first when the bank has them, then random cells, each with a random
seed of the cell):

- ``epochs_ratio``: epochs trained over the epochs of an unpruned search;
- ``good_pruned``: the share of trials whose cell is within noise of the bank's best cell
  that the pruner stopped (the loss a pruner must not cause);
- ``regret_pp``: the bank's best test accuracy minus that of the configuration a search would
  confirm (the best, by bank test accuracy, of the top-2 completed trials by final validation
  accuracy and the best completed baseline), mean over searches.

Signals: per task and decision epoch, the Spearman correlation of each recorded signal with the
runs' final validation accuracy and final test accuracy, over all runs and within the SAM family;
and the forgetting pruner's predictor (ridge on the epoch's record, as in
``ForgettingPruner``) fitted on random sets of ``--fit`` runs, scored by the Spearman
correlation of its predictions with the other runs' finals, with every feature and with each
feature left out.

    python benchmarks/replay.py                       # every stored task; writes results/replay.json
    python benchmarks/replay.py --quick --json        # a tiny study, a few searches
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bank import SEEDS, Cell, Store, load_bank, truth, within_noise  # noqa: E402
from bank.store import DATA_DIR  # noqa: E402

DEFAULT_OUT = BENCHMARKS / "results" / "replay.json"
PRUNERS = ("none", "forgetting", "forgetting-no-inert", "forgetting:min_probability=0.5",
           "median", "patient-median", "hyperband")
SIGNALS = ("val_acc", "val_loss", "train_acc", "train_loss", "forgetting_rate", "flip_rate",
           "loss_gap", "p_drop", "bias_clean", "bias_perturbed")
PREDICTOR_FEATURES = ("val_acc", "train_acc", "val_loss", "forgetting_rate", "flip_rate", "loss_gap")
WARM = (Cell("sgd", 0.05), Cell("sam", 0.05, 0.05), Cell("asam", 0.05, 1.0),
        Cell("gsam", 0.05, 0.05, None, "lr_prop"), Cell("obf", 0.05, 0.05))


def make_pruner(name: str, epochs: int, top_k: int = 2, val_size: int | None = None):
    import optuna

    from samtune.search import make_pruner as samtune_pruner
    from samtune.search._forgetting_pruner import ForgettingPruner

    if name.startswith("forgetting:"):  # forgetting:KEY=VALUE,...: ForgettingPruner's arguments
        kwargs = {"n_startup_trials": 3, "n_warmup_steps": max(2, epochs // 5), "n_steps": epochs,
                  "top_k": top_k}
        for item in name.split(":", 1)[1].split(","):
            key, _, value = item.partition("=")
            if key == "val_z":  # the bar lowered by val_z standard errors of the val split
                kwargs["val_size"], kwargs["val_noise_z"] = val_size, float(value)
            elif key == "n_warmup_frac":
                kwargs["n_warmup_steps"] = max(2, round(epochs * float(value)))
            else:
                kwargs[key] = type(kwargs[key])(float(value)) if key in kwargs else float(value)
        kwargs = {k: (bool(v) if k == "hopeless_in_warmup" else v) for k, v in kwargs.items()}
        return ForgettingPruner(**kwargs)
    if name == "forgetting-no-inert":  # samtune's default without the inert-perturbation rule
        from samtune.search._pruners import FORGETTING_MIN_PROBABILITY, FORGETTING_VAL_Z

        return ForgettingPruner(n_startup_trials=3, n_warmup_steps=max(2, epochs // 5),
                                n_steps=epochs, top_k=top_k, inert_loss_gap=0.0,
                                min_probability=FORGETTING_MIN_PROBABILITY, val_size=val_size,
                                val_noise_z=FORGETTING_VAL_Z)
    if name == "patient-median":
        return optuna.pruners.PatientPruner(
            optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 4)),
            patience=2)
    return samtune_pruner(name, epochs=epochs, top_k=top_k, val_size=val_size)


# -- replaying trials -----------------------------------------------------------------------------


def replay(trials: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]], pruner,
           variants: Sequence[str] = ("sgd", "sam", "asam", "gsam", "obf", "randsam", "gsam-obf",
                                      "asam-obf")) -> list[int | None]:
    """Feed ``trials`` (params with ``variant``, or none for a staged search's baseline trial,
    and per-epoch history records) to a
    fresh in-memory study with ``pruner``, one after the other, as a one-worker search runs them.
    Returns, per trial, the epoch at which it was pruned (None: completed)."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    out: list[int | None] = []
    for params, history in trials:
        if "variant" in params:
            study.enqueue_trial({"variant": params["variant"]})
            trial = study.ask({"variant": CategoricalDistribution(list(variants))})
        else:  # a staged search's baseline trial: no variant parameter, its stage says sgd
            trial = study.ask()
            trial.set_user_attr("stage", "baseline")
        pruned_at = None
        for i, record in enumerate(history):
            epoch = int(record.get("epoch", i + 1))
            trial.set_user_attr("history", history[:i + 1])
            value = record.get("val_acc")
            trial.report(float("nan") if value is None else float(value), epoch)
            if trial.should_prune():
                pruned_at = epoch
                break
        if pruned_at is None:
            final = history[-1].get("val_acc") if history else None
            study.tell(trial, float("nan") if final is None else float(final),
                       state=TrialState.COMPLETE if final is not None else TrialState.FAIL)
        else:
            study.tell(trial, state=TrialState.PRUNED)
        out.append(pruned_at)
    return out


def records(store: Store, key: str, seed: int) -> list[dict[str, Any]]:
    """A bank run's history as samtune's per-epoch records."""
    h = store.history(key, seed)
    n = len(h.get("val_acc", []))
    return [{"epoch": e + 1, **{k: (v[e] if v[e] is not None else math.nan) for k, v in h.items()}}
            for e in range(n)]


def variant_of(store: Store, key: str) -> str:
    return next(iter(store.runs[key].values()))["cell"]["variant"]


def simulate(store: Store, pruner_name: str, n_trials: int, rng: random.Random,
             good: set[str], best_acc: float) -> dict[str, Any]:
    epochs = int(store.header["epochs"])
    keys = [k for k in store.keys() if len(store.seeds(k)) >= SEEDS]
    warm = [c.key for c in WARM if c.key in store.runs]
    order = warm + rng.sample([k for k in keys if k not in warm], min(len(keys) - len(warm),
                                                                      n_trials - len(warm)))
    chosen = [(k, rng.choice(store.seeds(k)[:SEEDS])) for k in order[:n_trials]]
    trials = [({"variant": variant_of(store, k)}, records(store, k, s)) for k, s in chosen]
    pruned = replay(trials, make_pruner(pruner_name, epochs,
                                        val_size=int(store.header.get("sizes", {}).get("val", 0)) or None))
    trained = sum(p if p is not None else len(h) for p, (_, h) in zip(pruned, trials))
    full = sum(len(h) for _, h in trials)
    completed = [(k, h[-1]["val_acc"]) for (k, _), p, (_, h) in zip(chosen, pruned, trials)
                 if p is None and h and math.isfinite(h[-1]["val_acc"])]
    top = [k for k, _ in sorted(completed, key=lambda kv: -kv[1])[:2]]
    base = [k for k, _ in sorted(completed, key=lambda kv: -kv[1]) if k.startswith("sgd|")][:1]
    confirmed = max(top + base, key=lambda k: store.mean_acc(k)) if top + base else None
    n_good = sum(k in good for k, _ in chosen)
    return {"epochs_ratio": trained / full,
            "good_trials": n_good,
            "good_pruned": sum(k in good and p is not None for (k, _), p in zip(chosen, pruned)),
            "completed": len(completed),
            "regret_pp": 100 * (best_acc - store.mean_acc(confirmed)) if confirmed else math.nan}


def pruner_table(stores: dict[str, Store], searches: int, n_trials: int, seed: int,
                 pruners: tuple[str, ...] = PRUNERS) -> dict:
    out: dict[str, Any] = {}
    for name, store in stores.items():
        t = truth(store)
        good = {k for k in store.keys() if len(store.seeds(k)) >= SEEDS
                and within_noise(store, t.best, k)}
        per = {}
        for pruner in pruners:
            rng = random.Random(seed)
            sims = [simulate(store, pruner, n_trials, rng, good, t.best_acc) for _ in range(searches)]
            g = sum(s["good_trials"] for s in sims)
            per[pruner] = {
                "epochs_ratio": statistics.fmean(s["epochs_ratio"] for s in sims),
                "good_pruned_rate": (sum(s["good_pruned"] for s in sims) / g) if g else math.nan,
                "completed": statistics.fmean(s["completed"] for s in sims),
                "regret_pp": statistics.fmean(s["regret_pp"] for s in sims
                                              if math.isfinite(s["regret_pp"])),
            }
        out[name] = {"good_cells": len(good), "pruners": per}
    return out


# -- signals ----------------------------------------------------------------------------------


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 4 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a near-constant signal: NaN, reported as such
        return float(spearmanr(a[ok], b[ok]).statistic)


def decision_epochs(epochs: int) -> list[int]:
    return sorted({1, 2, 3, max(2, epochs // 5), epochs // 4, epochs // 2} - {0})


def run_table(store: Store) -> list[dict[str, Any]]:
    rows = []
    for key in store.keys():
        variant = variant_of(store, key)
        for seed in store.seeds(key)[:SEEDS]:
            h = store.history(key, seed)
            if not h.get("val_acc") or h["val_acc"][-1] is None:
                continue
            rows.append({"key": key, "sam": variant != "sgd", "history": h,
                         "final_val": h["val_acc"][-1], "test": float(store.correct(key, seed).mean())})
    return rows


def signal_ranks(store: Store) -> dict[str, Any]:
    rows = run_table(store)
    out = {}
    for e in decision_epochs(int(store.header["epochs"])):
        per = {}
        for sig in SIGNALS:
            vals = [(r["history"].get(sig) or [None] * e)[e - 1] if len(r["history"].get(sig) or []) >= e
                    else None for r in rows]
            vals = [math.nan if v is None else v for v in vals]
            sam = [i for i, r in enumerate(rows) if r["sam"]]
            per[sig] = {
                "final_val_all": spearman(vals, [r["final_val"] for r in rows]),
                "test_all": spearman(vals, [r["test"] for r in rows]),
                "final_val_sam": spearman([vals[i] for i in sam], [rows[i]["final_val"] for i in sam]),
            }
        out[str(e)] = per
    return out


def predictor_ablation(store: Store, n_fit: int, repeats: int, seed: int) -> dict[str, Any]:
    """Spearman of the ridge predictor's predictions with the held-out finals, per epoch."""
    rows = run_table(store)
    rng = np.random.default_rng(seed)
    out = {}
    for e in decision_epochs(int(store.header["epochs"])):
        feats, finals = [], []
        for r in rows:
            h = r["history"]
            vec = []
            for f in PREDICTOR_FEATURES:
                seq = h.get(f) or []
                v = seq[e - 1] if len(seq) >= e and seq[e - 1] is not None else (0.0 if not r["sam"] else math.nan)
                vec.append(v)
            vec.append(0.0 if r["sam"] else 1.0)
            feats.append(vec)
            finals.append(r["final_val"])
        x, y = np.array(feats, float), np.array(finals, float)
        ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(y) < n_fit + 4:
            continue
        res = {}
        for drop in (None, *PREDICTOR_FEATURES):
            cols = [i for i, f in enumerate((*PREDICTOR_FEATURES, "is_baseline")) if f != drop]
            scores = []
            for _ in range(repeats):
                idx = rng.permutation(len(y))
                fit, test = idx[:n_fit], idx[n_fit:]
                pred = _ridge(x[fit][:, cols], y[fit], x[test][:, cols])
                scores.append(spearman(pred, y[test]))
            res["all" if drop is None else f"without_{drop}"] = float(np.nanmean(scores))
        out[str(e)] = res
    return out


def _ridge(x: np.ndarray, y: np.ndarray, x_new: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    mean, std = x.mean(0), x.std(0)
    keep = std > 1e-12
    z = np.hstack([np.ones((len(y), 1)), (x[:, keep] - mean[keep]) / std[keep]])
    pen = alpha * np.eye(z.shape[1])
    pen[0, 0] = 0
    coef = np.linalg.solve(z.T @ z + pen, z.T @ y)
    lo, hi = x[:, keep].min(0), x[:, keep].max(0)
    zn = np.hstack([np.ones((len(x_new), 1)), (np.clip(x_new[:, keep], lo, hi) - mean[keep]) / std[keep]])
    return zn @ coef


# -- the command -------------------------------------------------------------------------------


def quick_store(folder: Path) -> dict[str, Store]:
    """A tiny bank of the quick task (shared with decision.py's quick run)."""
    from decision import quick_bank

    quick_bank(folder)
    return load_bank(["tiny"], folder)


def summarize(pruners: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for p in next(iter(pruners.values()))["pruners"]:
        vals = [t["pruners"][p] for t in pruners.values()]
        rates = [v["good_pruned_rate"] for v in vals if math.isfinite(v["good_pruned_rate"])]
        out[p] = {"epochs_ratio": statistics.fmean(v["epochs_ratio"] for v in vals),
                  "good_pruned_rate": statistics.fmean(rates) if rates else math.nan,
                  "regret_pp": statistics.fmean(v["regret_pp"] for v in vals),
                  "completed": statistics.fmean(v["completed"] for v in vals)}
    return out


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'task':<18} {'pruner':<20} epochs  good_pruned  completed  regret_pp"]
    for task, t in result["pruners"].items():
        for p, v in t["pruners"].items():
            lines.append(f"{task:<18} {p:<20} {v['epochs_ratio']:6.2f}  {v['good_pruned_rate']:11.2f}"
                         f"  {v['completed']:9.1f}  {v['regret_pp']:9.2f}")
    for p, v in result["summary"].items():
        lines.append(f"{'ALL':<18} {p:<20} {v['epochs_ratio']:6.2f}  {v['good_pruned_rate']:11.2f}"
                     f"  {v['completed']:9.1f}  {v['regret_pp']:9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=None)
    p.add_argument("--searches", type=int, default=40, help="simulated searches per task and pruner")
    p.add_argument("--trials", type=int, default=24, help="trials per simulated search")
    p.add_argument("--fit", type=int, default=12, help="runs the predictor is fitted on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pruners", default=",".join(PRUNERS),
                   help="comma-separated; forgetting:KEY=VALUE;... passes ForgettingPruner arguments "
                        "(';' between arguments)")
    p.add_argument("--no-signals", action="store_true", help="the pruner table only")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    tmp = None
    if args.quick:
        import tempfile

        tmp = tempfile.TemporaryDirectory()
        stores = quick_store(Path(tmp.name))
        args.searches, args.trials, args.fit = 3, 6, 3
    else:
        try:
            stores = load_bank(args.tasks.split(",") if args.tasks else None, DATA_DIR)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not stores:
        print("error: no bank tasks stored; build them with python benchmarks/bank/build.py",
              file=sys.stderr)
        return 2
    names = tuple(n.replace(";", ",") for n in args.pruners.split(",") if n)
    pruners = pruner_table(stores, args.searches, args.trials, args.seed, names)
    result = {"benchmark": "replay", "quick": args.quick, "searches": args.searches,
              "trials": args.trials, "pruners": pruners, "summary": summarize(pruners),
              "signals": {} if args.no_signals else {n: signal_ranks(s) for n, s in stores.items()},
              "predictor": {} if args.no_signals else {
                  n: predictor_ablation(s, args.fit, 30, args.seed) for n, s in stores.items()},
              "wall_s": round(time.monotonic() - t0, 1)}
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(json.dumps(result, default=float) if args.json else format_table(result))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
