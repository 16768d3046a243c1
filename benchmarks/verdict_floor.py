"""The verdict's compute floor: how many confirmation runs a right ``use`` needs on each bank
task, even for a search that found the bank's best configuration and its tuned baseline for free.

Per bank task, the oracle confirms the bank's tuned baseline against a SAM-family cell within
noise of the best (the best itself, and the cheapest near it when that is another SAM-family
cell), from the bank's own runs: each seed's test predictions, on the task's test split, the
split samtune's confirmation tests on. For n >= 2 seeds a side (one seed has no seed term) it draws n of the cell's stored seeds
and n of the baseline's (every pair of subsets, or ``--draws`` of them), computes samtune's own
paired evidence (``_evidence.paired_gain``: the test examples' and the seeds' terms) and counts
a ``use`` when the gain clears one comparison's bound (``critical_z(Z, df)``: the most lenient
bound samtune applies, with no look or candidate correction; a sequential confirmation pays
more at its first look). ``power``: the share of draws that say ``use``. A draw's ``runs``:
n x (1 + the cell's step cost over the baseline's, the bank's measured ratio), in baseline runs.

``n90``: the fewest seeds a side with power >= 0.9 among the stored ones; where none reaches it,
the projection from all the stored seeds (``_evidence.projected_se``, normal quantiles: the
measured gain clearing (Z + 1.28) standard errors), marked ``~``. Where SAM does not help, the
oracle's right answer is keep-baseline, and ``power`` is the rate of false ``use``.

The floor is generous to the oracle: the bank's gain is measured on the same seeds it chose the
cell on (seeds 0-2 of 3-6), the search costs nothing, and a sequential design's first looks are
not paid for. A real search cannot need fewer runs for the same power.

    python benchmarks/verdict_floor.py            # seconds; results/verdict_floor.txt and .json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import sys
from pathlib import Path
from statistics import NormalDist
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bank import Store, cell_of, open_store, truth  # noqa: E402
from bank.tasks import TASKS  # noqa: E402

from samtune.search._evidence import Z, critical_z, paired_gain, projected_se  # noqa: E402

OUT = BENCHMARKS / "results" / "verdict_floor"
POWER = 0.9
Z_POWER = NormalDist().inv_cdf(POWER)
MIN_SEEDS = 2  # one seed a side has no seed term: its standard error is too small
MIN_PAIRS = 10  # fewer distinct seed-subset pairs: no sample of the seeds' spread


def per_seed(store: Store, key: str) -> dict[int, tuple[float, Any]]:
    """{seed: (its test accuracy, which test examples it got right)} of ``key``'s stored seeds."""
    import torch

    out = {}
    for s in store.seeds(key):
        hit = torch.as_tensor(store.correct(key, s)).bool()
        out[s] = (hit.double().mean().item(), hit)
    return out


def record(seeds: dict[int, tuple[float, Any]], chosen: tuple[int, ...]) -> dict[str, Any]:
    """A confirmation record (what ``paired_gain`` reads) of the ``chosen`` seeds."""
    return {"test_accuracy": {"per_seed": [seeds[s][0] for s in chosen]},
            "correct": [seeds[s][1] for s in chosen]}


def says_use(cand: dict[str, Any], base: dict[str, Any]) -> bool:
    ev = paired_gain(cand, base)
    return math.isfinite(ev["se"]) and ev["gain"] > critical_z(Z, ev["df"]) * ev["se"]


def subsets(seeds: list[int], n: int, draws: int, rng: random.Random) -> list[tuple[int, ...]]:
    every = list(itertools.combinations(seeds, n))
    return every if len(every) <= draws else [tuple(sorted(rng.sample(seeds, n))) for _ in range(draws)]


def power_curve(store: Store, cand: str, base: str, draws: int,
                rng: random.Random) -> dict[int, float]:
    """{n: the share of (n cand seeds, n base seeds) draws that clear the bound}, for n from
    ``MIN_SEEDS`` while the stored seeds give at least ``MIN_PAIRS`` distinct draws (fewer:
    the draws are nearly the seeds the gain was measured on, not a sample)."""
    sc, sb = per_seed(store, cand), per_seed(store, base)
    out = {}
    for n in range(MIN_SEEDS, min(len(sc), len(sb)) + 1):
        pairs = list(itertools.product(subsets(list(sc), n, draws, rng),
                                       subsets(list(sb), n, draws, rng)))
        if len(set(pairs)) < MIN_PAIRS:
            break
        if len(pairs) > draws:
            pairs = rng.sample(pairs, draws)
        out[n] = statistics.fmean(says_use(record(sc, a), record(sb, b)) for a, b in pairs)
    return out


def projected_n90(store: Store, cand: str, base: str, most: int = 200) -> int | None:
    """Seeds a side at which the gain measured on every stored seed clears (Z + 1.28) projected
    standard errors (None: no number up to ``most`` does, or no positive gain)."""
    sc, sb = per_seed(store, cand), per_seed(store, base)
    ev = paired_gain(record(sc, tuple(sc)), record(sb, tuple(sb)))
    if not (ev["gain"] > 0 and math.isfinite(ev["se"])):
        return None
    for n in range(1, most + 1):
        if (Z + Z_POWER) * projected_se(ev, n) <= ev["gain"]:
            return n
    return None


def task_floor(name: str, draws: int, seed: int) -> dict[str, Any]:
    return store_floor(open_store(name), draws, seed)


def store_floor(store: Store, draws: int, seed: int) -> dict[str, Any]:
    """The floor of one bank task's store: per SAM-family cell the oracle confirms, its power
    curve, ``n90`` and the runs it costs (``runs90``)."""
    t = truth(store)
    rng = random.Random(seed)
    keys = [t.best_sam]
    near = t.cheapest_near_best
    if near not in keys and cell_of(store, near).variant != "sgd":
        keys.append(near)
    rows = []
    for key in keys:
        cost = store.cost(cell_of(store, key).cost_key)
        power = power_curve(store, key, t.baseline, draws, rng)
        n90 = next((n for n, p in power.items() if p >= POWER), None)
        projected = n90 is None
        if projected:
            n90 = projected_n90(store, key, t.baseline)
        rows.append({
            "cell": key, "cost": cost, "power": {n: round(p, 3) for n, p in power.items()},
            "n90": n90, "n90_projected": projected,
            "runs90": None if n90 is None or not math.isfinite(cost) else round(n90 * (1 + cost), 1),
        })
    return {"task": t.task, "sam_helps": t.sam_helps, "gain_pp": round(100 * t.gain, 2),
            "se_pp": round(100 * t.se, 2), "n_test": len(store.y_test), "cells": rows}


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'task':<16} {'helps':<5} {'gain':>5} {'cell':<42} {'cost':>5}  "
             f"{'power at n seeds a side (n=p)':<36} {'n90':>4} {'runs90':>6}"]
    for r in results:
        for c in r["cells"]:
            power = " ".join(f"{n}={p:.2f}" for n, p in c["power"].items())
            n90 = "-" if c["n90"] is None else ("~" if c["n90_projected"] else "") + str(c["n90"])
            runs = "-" if c["runs90"] is None else f"{c['runs90']:.1f}"
            lines.append(f"{r['task']:<16} {'yes' if r['sam_helps'] else 'no':<5} "
                         f"{r['gain_pp']:>5.2f} {c['cell']:<42} {c['cost']:>5.2f}  {power:<36} "
                         f"{n90:>4} {runs:>6}")
    helps = [min((c["runs90"] for c in r["cells"] if c["runs90"] is not None), default=math.inf)
             for r in results if r["sam_helps"]]
    lines.append(f"the oracle's confirmation alone, at power {POWER} on the tasks where SAM helps: "
                 + ", ".join(f"{x:.1f}" for x in helps) + " baseline runs"
                 + (f" (mean {statistics.fmean(helps):.1f})" if all(map(math.isfinite, helps)) else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated bank tasks")
    ap.add_argument("--draws", type=int, default=400, help="seed-subset pairs per n at most")
    ap.add_argument("--seed", type=int, default=0, help="the draws' seed")
    ap.add_argument("--out", default=str(OUT), help="writes OUT.txt and OUT.json ('' : neither)")
    args = ap.parse_args(argv)
    results = [task_floor(name, args.draws, args.seed) for name in args.tasks.split(",")]
    text = table(results)
    print(text)
    if args.out:
        Path(args.out + ".txt").write_text(text + "\n")
        Path(args.out + ".json").write_text(json.dumps(
            {"benchmark": "verdict_floor", "z": Z, "power": POWER, "draws": args.draws,
             "tasks": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
