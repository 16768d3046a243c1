"""Neighbours around one warm start or two, or an lr scan of the warm starts first, replayed
on the bank (no training).

    python benchmarks/replay_centres.py            # 400 draws per task, 3 draw seeds; ~10 s

Per bank task: the default space's four SAM-family warm starts at the bank's tuned baseline lr,
each scored by one random seed's final validation accuracy (and loss); the bank-grid neighbours
(rho one grid step up and down, lr x2 and /2, the other batch design) of the best, or of the
best and the runner-up; candidates the top two by value and the best by loss; the confirmation
taken to pick the best of them on the bank's test accuracy. Prints the mean regret (pp: the
bank's best SAM-family cell minus the chosen one) per rule, and per task for the first two.
Recorded in RESULTS.md ("A second centre for the neighbours"). The scan rules run the best three
warm starts at lr x2, then at lr / 2, then the best trial's neighbours, ``budget`` trials in all
(9: a 24-trial search after its 9 baseline trials, 4 warm starts and 2 cheaper schedules; 2:
autoconfigure's 12); measured on the decision benchmark and not kept (RESULTS.md, "An lr scan of
the warm starts"). The plateau rules tune the baseline too, by one random seed per bank lr, and
centre the family on the tuned lr or on the largest lr within z binomial standard errors of the
best validation value (snapped to the bank lrs that hold the warm starts: the tuned lr x2 or / 2
at most); RESULTS.md, "The family at the top of the baseline's plateau". The last lines: each
task's SAM-family cells moved from the tuned baseline lr to twice and half of it (RESULTS.md,
"The runner-up baseline lr instead of the nearest").
"""

from __future__ import annotations

import functools
import math
import random
import statistics as st
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bank import Store, truth  # noqa: E402
from bank.store import DATA_DIR  # noqa: E402
from bank.tasks import TASKS  # noqa: E402
from bank.truth import cells_of  # noqa: E402

WARM = [("sam", 0.05, None, "constant"), ("asam", 1.0, None, "constant"),
        ("asam", 1.0, 16, "constant"), ("gsam-obf", 0.05, None, "lr_prop")]


def _near(p, rhos, cells) -> list:
    """The bank-grid neighbours of cell ``p``: rho a grid step up and down, lr x2 and /2, the
    other batch design."""
    v, r, m, sc, lr = p
    grid = sorted(set(rhos[v]))
    i = grid.index(r)
    out = [(v, grid[j], m, sc, lr) for j in (i + 1, i - 1) if 0 <= j < len(grid)]
    out += [(v, r, m, sc, lr * 2), (v, r, m, sc, lr / 2), (v, r, 16 if m is None else None, sc, lr)]
    return [q for q in out if q in cells]


def _score(p, seen, store, cells, rng) -> None:
    """One random seed's final validation accuracy and loss of cell ``p`` (once per draw)."""
    if p not in seen:
        run = rng.choice(list(store.runs[cells[p].key].values()))
        seen[p] = (run["history"]["val_acc"][-1], run["history"]["val_loss"][-1])


@functools.cache  # read once: every rule and draw seed replays the same bank
def _task_bank(name: str):
    """The task's store, its SAM-family cells with all seeds ({(variant, rho, m, schedule, lr):
    cell}), their mean test accuracies, the tuned baseline's lr and each variant's rhos."""
    store = Store(DATA_DIR / f"{name}.jsonl.gz")
    cells = {(c.variant, c.rho, c.m, c.schedule, c.lr): c for c in cells_of(store)
             if c.variant != "sgd" and len(store.seeds(c.key)) >= 3}
    test = {k: store.mean_acc(c.key) for k, c in cells.items()}
    lr0 = float(truth(store).baseline.split("lr=")[1])
    rhos: dict[str, list[float]] = {}
    for v, r, *_ in cells:
        rhos.setdefault(v, []).append(r)
    return store, cells, test, lr0, rhos


def _warm_starts(lr0, seen, store, cells, rng) -> list:
    """The warm starts at ``lr0`` that the bank holds, scored, best value first."""
    warm = [(*w, lr0) for w in WARM if (*w, lr0) in cells]
    for p in warm:
        _score(p, seen, store, cells, rng)
    return sorted(warm, key=lambda p: -seen[p][0])


def _candidates(seen) -> set:
    """The confirmation's candidates: the top two by value and the best by loss."""
    by_value = sorted(seen, key=lambda p: -seen[p][0])
    return {by_value[0], by_value[1], min(seen, key=lambda p: seen[p][1])}


def _task_regret(name: str, two: bool, reps: int, rng: random.Random, keep) -> float:
    store, cells, test, lr0, rhos = _task_bank(name)
    best = max(test.values())
    regrets = []
    for _ in range(reps):
        seen: dict = {}
        order = _warm_starts(lr0, seen, store, cells, rng)
        for j, centre in enumerate(order[:2] if two else order[:1]):
            for q in _near(centre, rhos, cells):
                if j == 0 or keep is None or keep(centre, q):
                    _score(q, seen, store, cells, rng)
        regrets.append(best - max(test[p] for p in _candidates(seen)))
    return 100 * st.fmean(regrets)


def _scan_regret(name: str, budget: int, reps: int, rng: random.Random) -> float:
    """The lr scan of the best three warm starts (x2 first), then the best's neighbours."""
    store, cells, test, lr0, rhos = _task_bank(name)
    best = max(test.values())
    regrets = []
    for _ in range(reps):
        seen: dict = {}
        ran: list = []

        def run(q, seen=seen, ran=ran) -> None:
            if q in cells and q not in seen and len(ran) < budget:
                _score(q, seen, store, cells, rng)
                ran.append(q)

        order = _warm_starts(lr0, seen, store, cells, rng)
        for f in (2, 0.5):
            for v, r, m, sc, lr in order[:3]:
                run((v, r, m, sc, lr * f))
        top = max(seen, key=lambda p: seen[p][0])
        for q in _near(top, rhos, cells):
            run(q)
        regrets.append(best - max(test[p] for p in _candidates(seen)))
    return 100 * st.fmean(regrets)


def _baseline_curve(store) -> list:
    """The bank's sgd cells: (lr, every seed's final validation accuracy), by lr."""
    cs = sorted((c for c in cells_of(store) if c.variant == "sgd"), key=lambda c: c.lr)
    return [(c.lr, [r["history"]["val_acc"][-1] for r in store.runs[c.key].values()]) for c in cs]


def _plateau_regret(name: str, z: float | None, reps: int, rng: random.Random) -> float:
    """The baseline tuned by one random seed per bank lr; the family (warm starts, the best's
    and the runner-up's neighbours) centred on the tuned lr (``z`` None) or on the largest lr
    within ``z`` binomial standard errors of the best validation value, at the bank lr nearest
    it that holds three warm starts or more."""
    store, cells, test, _, rhos = _task_bank(name)
    curve = _baseline_curve(store)
    n_val = store.header["sizes"]["val"]
    lrs = {lr for lr in {p[4] for p in cells} if sum((*w, lr) in cells for w in WARM) >= 3}
    best = max(test.values())
    regrets = []
    for _ in range(reps):
        vals = [(lr, rng.choice(v)) for lr, v in curve]
        top_lr, top = max(vals, key=lambda p: p[1])
        margin = 0.0 if z is None else z * math.sqrt(max(top * (1 - top), 1e-4) / n_val)
        lr0 = max(lr for lr, v in vals if v >= top - margin)
        lr0 = min(lrs, key=lambda lr: abs(math.log(lr / lr0)))
        seen: dict = {}
        for centre in _warm_starts(lr0, seen, store, cells, rng)[:2]:
            for q in _near(centre, rhos, cells):
                _score(q, seen, store, cells, rng)
        regrets.append(best - max(test[p] for p in _candidates(seen)))
    return 100 * st.fmean(regrets)


def plateau_regret(z: float | None, reps: int = 300, seed: int = 0) -> tuple[float, dict[str, float]]:
    rng = random.Random(seed)
    per = {name: _plateau_regret(name, z, reps, rng) for name in TASKS}
    return st.fmean(per.values()), per


def scan_regret(budget: int, reps: int = 400, seed: int = 0) -> tuple[float, dict[str, float]]:
    rng = random.Random(seed)
    per = {name: _scan_regret(name, budget, reps, rng) for name in TASKS}
    return st.fmean(per.values()), per


def regret(two: bool, reps: int = 400, seed: int = 0, keep=None) -> tuple[float, dict[str, float]]:
    """Mean regret over the tasks; ``keep(centre, point)`` filters the runner-up's neighbours."""
    rng = random.Random(seed)
    per = {name: _task_regret(name, two, reps, rng, keep) for name in TASKS}
    return st.fmean(per.values()), per


def lr_moves() -> dict[str, dict[str, float]]:
    """Per task, over the SAM-family cells the bank holds at its tuned baseline lr and at twice
    (half) that lr: the mean test-accuracy change (pp) of moving them there, and how many gain."""
    out = {}
    for name in TASKS:
        _, _, test, lr0, _ = _task_bank(name)
        at = [p for p in test if math.isclose(p[4], lr0, rel_tol=1e-6)]
        row: dict[str, float] = {}
        for label, f in (("x2", 2.0), ("/2", 0.5)):
            d = [test[(*p[:4], p[4] * f)] - test[p] for p in at if (*p[:4], p[4] * f) in test]
            row[f"{label} pp"] = round(100 * st.fmean(d), 2) if d else math.nan
            row[f"{label} gain"] = f"{sum(x > 0 for x in d)}/{len(d)}"
        out[name] = row
    return out


def main() -> int:
    for label, two, keep in (
            ("best only", False, None), ("best and runner-up", True, None),
            ("runner-up without the batch-design move", True, lambda c, q: q[2] == c[2]),
            ("runner-up's lr moves only", True, lambda c, q: q[4] != c[4]),
            ("runner-up's rho moves only", True, lambda c, q: q[1] != c[1])):
        means = [regret(two, seed=s, keep=keep) for s in range(3)]
        line = f"{label:42s} mean regret {st.fmean(m for m, _ in means):.2f} pp"
        if keep is None:
            tasks = {t: round(st.fmean(p[t] for _, p in means), 2) for t in means[0][1]}
            line += f"  {tasks}"
        print(line)
    for budget in (9, 2):
        means = [scan_regret(budget, seed=s) for s in range(3)]
        tasks = {t: round(st.fmean(p[t] for _, p in means), 2) for t in means[0][1]}
        print(f"{f'lr scan, then the best (budget {budget})':42s} mean regret "
              f"{st.fmean(m for m, _ in means):.2f} pp  {tasks}")
    for z in (None, 0.5, 1.0, 2.0):
        means = [plateau_regret(z, seed=s) for s in range(3)]
        tasks = {t: round(st.fmean(p[t] for _, p in means), 2) for t in means[0][1]}
        label = ("family at the tuned lr (one seed per lr)" if z is None
                 else f"family at the plateau's top, {z:g} SE")
        print(f"{label:42s} mean regret {st.fmean(m for m, _ in means):.2f} pp  {tasks}")
    for name, row in lr_moves().items():
        print(f"{'SAM cells moved from the tuned lr':34s} {name:16s} {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
