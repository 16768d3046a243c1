"""Which completed trials should the confirmation retrain? Candidate rules replayed over the bank.

A search's trials are single-seed runs judged on a validation split that may be small and
noisy, so the trial with the best validation value is often a lucky seed of an ordinary
configuration (the winner's curse). This script simulates the search's family stage on the
bank: each simulated search draws ``--trials`` SAM-family cells of a task (one random seed each:
its final validation accuracy is the trial's value), a rule picks ``--top-k`` candidates, and
the confirmation is assumed to find the better of them (its many-seed test comparison). Per
rule and task, over ``--searches`` simulated searches:

- ``regret_pp``: the bank's best SAM-family test accuracy minus that of the best candidate;
- ``hit``: the share of searches with a candidate within noise of the bank's best SAM cell.

Rules: ``raw`` (the top-k by observed value, samtune's rule), ``gp`` (the top-k by the posterior
mean of a Gaussian process fitted to every family trial's value: rho and lr on log scales
normalized by the space's ranges, the batch design and schedule as flags, a fitted noise
level), ``gp+raw`` (the best by the posterior mean, then the best observed value not already
picked), ``gp-variant`` (``gp`` with the variant as one-hot inputs too), ``design`` (the best
observed value of each batch design, the whole batch and m < batch, in turn, then by value),
``loss`` (the top-k by final validation loss, lowest first) and ``raw+loss`` (the best by value,
the best by loss, the second by value, ..., each cell once). ``--value val_loss`` makes a
trial report its negated final validation loss instead of its accuracy.

    python benchmarks/candidates.py                   # every stored task; results/candidates.json
    python benchmarks/candidates.py --quick --json    # a few searches of two tasks
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bank import SEEDS, Cell, Store, cell_of, load_bank, truth, within_noise  # noqa: E402
from bank.store import DATA_DIR  # noqa: E402
from bank.truth import cells_of  # noqa: E402

DEFAULT_OUT = BENCHMARKS / "results" / "candidates.json"
RULES = ("raw", "gp", "gp+raw", "gp-variant", "design", "loss", "raw+loss")


@functools.cache
def _default_space():
    from samtune.search._space import SearchSpace  # noqa: PLC0415

    return SearchSpace.load("default")


def features(cells: list[Cell], base_lr: float, variants: list[str] | None = None) -> np.ndarray:
    """rho and lr on log scales over the default space's ranges (the family's lr within
    ``FAMILY_LR_FACTOR`` of the tuned lr), the batch design and the schedule as flags."""
    from samtune.search._stages import FAMILY_LR_FACTOR  # noqa: PLC0415

    space = _default_space()
    lr_span = 2 * math.log(FAMILY_LR_FACTOR)
    rows = []
    for c in cells:
        r = space.rho_range(c.variant)
        lo, hi = r["low"], r["high"]
        row = [math.log(c.lr / base_lr) / lr_span, math.log(c.rho / lo) / math.log(hi / lo),
               float(c.m is not None), float(c.schedule != "constant")]
        if variants is not None:
            row += [float(c.variant == v) for v in variants]
        rows.append(row)
    return np.array(rows)


def posterior_mean(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The GP's posterior mean at the observed points (a fitted noise level smooths them)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = (ConstantKernel(1.0, (1e-3, 1e2))
              * Matern(length_scale=np.ones(x.shape[1]), length_scale_bounds=(0.05, 20.0), nu=2.5)
              + WhiteKernel(0.1, (1e-4, 10.0)))
    scale = float(np.std(y)) or 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp = GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=2,
                                      random_state=0)
        gp.fit(x, (y - y.mean()) / scale)
    return gp.predict(x) * scale + y.mean()


def pick(rule: str, cells: list[Cell], values: np.ndarray, base_lr: float, k: int,
         losses: np.ndarray | None = None) -> list[Cell]:
    order_raw = list(np.argsort(-values))
    if rule == "raw":
        return [cells[i] for i in order_raw[:k]]
    if rule in ("loss", "raw+loss"):  # by the final validation loss (lowest first)
        order_loss = list(np.argsort(losses))
        if rule == "loss":
            return [cells[i] for i in order_loss[:k]]
        chosen = []
        for i in (j for pair in zip(order_raw, order_loss, strict=True) for j in pair):
            if i not in chosen and len(chosen) < k:
                chosen.append(i)  # the best by value and the best by loss in turn
        return [cells[i] for i in chosen]
    if rule == "design":
        chosen: list[int] = []
        for whole in (True, False):
            best = next((i for i in order_raw if (cells[i].m is None) == whole), None)
            if best is not None and len(chosen) < k:
                chosen.append(best)
        chosen += [i for i in order_raw if i not in chosen][: k - len(chosen)]
        return [cells[i] for i in chosen]
    variants = sorted({c.variant for c in cells}) if rule == "gp-variant" else None
    mean = posterior_mean(features(cells, base_lr, variants), values)
    order_gp = list(np.argsort(-mean))
    if rule in ("gp", "gp-variant"):
        return [cells[i] for i in order_gp[:k]]
    if rule == "gp+raw":
        chosen = [order_gp[0]] + [i for i in order_raw if i != order_gp[0]][: k - 1]
        return [cells[i] for i in chosen]
    raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")


VALUES = {  # what a simulated trial reports, from its run's history (higher is better)
    "val_acc": lambda h: h["val_acc"][-1],  # the final validation accuracy (samtune's value)
    "val_loss": lambda h: -h["val_loss"][-1],  # the final validation loss, negated
}


def simulate(store: Store, searches: int, trials: int, top_k: int, seed: int,
             rules: tuple[str, ...] = RULES, value: str = "val_acc") -> dict[str, Any]:
    t = truth(store)
    fam = [c for c in cells_of(store) if c.variant != "sgd" and len(store.seeds(c.key)) >= SEEDS]
    base_lr = cell_of(store, t.baseline).lr
    best = max(store.mean_acc(c.key) for c in fam)
    rng = random.Random(seed)
    out: dict[str, dict[str, list[float]]] = {r: {"regret": [], "hit": []} for r in rules}
    for _ in range(searches):
        drawn = rng.sample(fam, min(trials, len(fam)))
        runs = [store.history(c.key, rng.choice(store.seeds(c.key))) for c in drawn]
        values = np.array([VALUES[value](h) for h in runs], dtype=float)
        losses = np.array([h["val_loss"][-1] for h in runs], dtype=float)
        for rule in rules:
            picked = pick(rule, drawn, values, base_lr, top_k, losses)
            top = max(picked, key=lambda c: store.mean_acc(c.key))
            out[rule]["regret"].append(100 * (best - store.mean_acc(top.key)))
            out[rule]["hit"].append(float(within_noise(store, t.best_sam, top.key)))
    return {rule: {"regret_pp": statistics.fmean(v["regret"]), "hit": statistics.fmean(v["hit"])}
            for rule, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=None, help="comma-separated bank tasks (default: all stored)")
    p.add_argument("--searches", type=int, default=200, help="simulated searches per task")
    p.add_argument("--trials", type=int, default=12, help="completed family trials per search")
    p.add_argument("--top-k", type=int, default=2, help="candidates per search")
    p.add_argument("--rules", default=",".join(RULES), help="comma-separated rules to replay")
    p.add_argument("--value", choices=sorted(VALUES), default="val_acc",
                   help="what a trial reports: its final validation accuracy or loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="two tasks, a few searches")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", type=Path, default=None, help=f"result file (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    names = args.tasks.split(",") if args.tasks else None
    searches = args.searches
    if args.quick:
        names, searches = ["breast-cancer", "table-clean"], 5
    try:
        stores = load_bank(names, DATA_DIR)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rules = tuple(r for r in args.rules.split(",") if r)
    unknown = [r for r in rules if r not in RULES]
    if unknown or not rules:
        print(f"error: unknown rule(s) {unknown}; known: {', '.join(RULES)}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    per_task = {n: simulate(s, searches, args.trials, args.top_k, args.seed, rules, args.value)
                for n, s in stores.items()}
    mean = {rule: {m: statistics.fmean(per_task[n][rule][m] for n in per_task)
                   for m in ("regret_pp", "hit")} for rule in rules}
    result = {"benchmark": "candidates", "searches": searches, "trials": args.trials,
              "top_k": args.top_k, "value": args.value, "seed": args.seed, "rules": list(rules), "wall_s": round(time.monotonic() - t0, 1),
              "tasks": per_task, "mean": mean}
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'task':16s} " + "  ".join(f"{r:>18s}" for r in rules))
    for n, row in [*per_task.items(), ("mean", mean)]:
        print(f"{n:16s} " + "  ".join(f"{row[r]['regret_pp']:7.2f} pp {row[r]['hit']:5.2f} hit"
                                      for r in rules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
