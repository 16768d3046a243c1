"""The bank's truth per task: the tuned baseline, the best SAM-family cell, whether SAM helps,
and the cheapest cell within noise of the best.

Cells are *chosen* on the first ``SEEDS`` seeds (every cell has them); the chosen cells'
accuracies and the gain are then measured over all their seeds (the top-up seeds are fresh, so
the choice's luck is diluted). ``sam_helps``: the best SAM-family cell beats the tuned baseline
beyond the noise (``stats``: seeds and test examples, paired).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from bank.grid import SEEDS, Cell
from bank.stats import Z, paired, within_noise
from bank.store import Store


@dataclass
class Truth:
    task: str
    baseline: str  # key of the tuned baseline cell
    baseline_acc: float
    best_sam: str  # key of the best SAM-family cell
    best_sam_acc: float
    gain: float  # best_sam_acc - baseline_acc
    se: float  # its standard error
    sam_helps: bool
    best: str  # the best cell overall: best_sam when SAM helps, else the baseline
    best_acc: float
    cheapest_near_best: str  # the cheapest cell within noise of the best
    cheapest_cost: float
    best_cost: float
    baseline_lr_edge: bool  # the tuned baseline's lr is on its grid's edge (should be False)
    n_cells: int
    n_runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cell_of(store: Store, key: str) -> Cell:
    """The cell stored under ``key`` (every run of a key holds the same cell)."""
    return Cell.from_dict(next(iter(store.runs[key].values()))["cell"])


def cells_of(store: Store) -> list[Cell]:
    return [cell_of(store, k) for k in store.keys()]


def _chosen(cells: list[Cell], store: Store) -> Cell:
    return max(cells, key=lambda c: store.mean_acc(c.key, range(SEEDS)))


def truth(store: Store) -> Truth:
    cells = [c for c in cells_of(store) if len(store.seeds(c.key)) >= SEEDS]
    if not cells:
        raise ValueError(f"bank task {store.header.get('name')!r} has no complete cell yet")
    base_cells = [c for c in cells if c.variant == "sgd"]
    fam = [c for c in cells if c.variant != "sgd"]
    base = _chosen(base_cells, store)
    lrs = [c.lr for c in base_cells]
    sam = _chosen(fam, store) if fam else None
    base_acc = store.mean_acc(base.key)
    if sam is not None:
        gain, se = paired(store, sam.key, base.key)
        helps = math.isfinite(gain) and gain > Z * se
        sam_acc = store.mean_acc(sam.key)
    else:
        gain, se, helps, sam_acc = math.nan, math.nan, False, math.nan
    best = sam if helps else base
    near = [c for c in cells if within_noise(store, best.key, c.key)]
    cheapest = min(near, key=lambda c: (store.cost(c.cost_key), -store.mean_acc(c.key)))
    return Truth(
        task=store.header["name"], baseline=base.key, baseline_acc=base_acc,
        best_sam=sam.key if sam else "", best_sam_acc=sam_acc, gain=gain, se=se,
        sam_helps=helps, best=best.key, best_acc=store.mean_acc(best.key),
        cheapest_near_best=cheapest.key, cheapest_cost=store.cost(cheapest.cost_key),
        best_cost=store.cost(best.cost_key),
        baseline_lr_edge=base.lr in (min(lrs), max(lrs)),
        n_cells=len(cells), n_runs=sum(len(v) for v in store.runs.values()),
    )
