"""The bank's grid: which cells each task trains, stage by stage, decided from what is stored.

A cell is one configuration (variant, rho, schedule, m, lr) trained at the task's full budget;
a run is one cell with one seed. ``plan(task, store)`` returns the runs still missing for the
next stage, so the builder can stop at any point and resume from the stored runs:

1. the baseline (sgd) over a factor-2 lr grid, ``BASE_LRS``, extended while its best lr sits on
   an edge (so the tuned baseline is tuned at least as well as any SAM family);
2. every SAM-family cell of ``FAMILY_GRID`` at three lrs around the baseline's best (x0.5, x1, x2:
   the baseline's grid is as fine as theirs and wider);
3. per variant, its best cell's lr extended while it sits on the edge of what it tried;
4. the step cost of every (variant, m, schedule), side by side with the baseline's step;
5. ``TOPUP_SEEDS`` more seeds for the cells the truth depends on (the tuned baseline, the best
   SAM-family cells, the cheapest cells within noise of the best).

Cells are chosen on the first ``SEEDS`` seeds only; the top-up seeds are fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bank.stats import within_noise

SEEDS = 3  # seeds per cell
TOPUP_SEEDS = 3  # more seeds for the cells the truth depends on
BASE_KWARGS = {"momentum": 0.9, "weight_decay": 5e-4}  # samtune's default space's base optimizer
BASE_LRS = tuple(round(0.01 * 2**k, 6) for k in range(8))  # 0.01 .. 1.28
MAX_EXTEND = 3  # lr steps added beyond a grid's edge at most
# variant -> (rhos, ms, schedule); asam's radius is about ten times sam's (domain brief, s.2)
FAMILY_GRID: dict[str, tuple[tuple[float, ...], tuple[int | None, ...], str]] = {
    "sam": ((0.02, 0.05, 0.1, 0.2), (None, 16), "constant"),
    "asam": ((0.5, 1.0, 2.0), (None, 16), "constant"),
    "gsam": ((0.05, 0.1, 0.2), (None, 16), "lr_prop"),
    "obf": ((0.05, 0.1, 0.2), (None, 16), "constant"),
    # the compositions the default space searches (their grids: gsam's and asam's)
    "gsam-obf": ((0.05, 0.1, 0.2), (None, 16), "lr_prop"),
    "asam-obf": ((0.5, 1.0, 2.0), (None, 16), "constant"),
}
TOP_SAM = 5  # best SAM-family cells topped up


@dataclass(frozen=True)
class Cell:
    variant: str
    lr: float
    rho: float = 0.0
    m: int | None = None
    schedule: str = "constant"

    @property
    def key(self) -> str:
        if self.variant == "sgd":
            return f"sgd|lr={self.lr:.6g}"
        return f"{self.variant}|rho={self.rho:g}|m={self.m}|{self.schedule}|lr={self.lr:.6g}"

    @property
    def cost_key(self) -> str:
        """What the step cost depends on (not lr, not rho > 0)."""
        return "sgd" if self.variant == "sgd" else f"{self.variant}|m={self.m}|{self.schedule}"

    def config(self):
        """The ``samtune.SAMConfig`` this cell trains."""
        from samtune.optim import SAMConfig  # noqa: PLC0415 (reading the bank needs no torch)

        return SAMConfig(variant=self.variant, rho=self.rho, m=self.m, schedule=self.schedule,
                         base_kwargs={"lr": self.lr, **BASE_KWARGS})

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "lr": self.lr, "rho": self.rho, "m": self.m,
                "schedule": self.schedule}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        return cls(d["variant"], float(d["lr"]), float(d["rho"]), d["m"], d["schedule"])

    @classmethod
    def from_config(cls, config) -> Cell:
        if not config.perturbs:
            return cls("sgd", config.lr)
        return cls(config.variant, config.lr, config.rho, config.m, config.schedule)

    def with_lr(self, lr: float) -> Cell:
        return Cell(self.variant, round(lr, 6), self.rho, self.m, self.schedule)


@dataclass(frozen=True)
class Job:
    """One thing for a worker to do: a run (cell, seed) or a cost measurement (cells)."""

    task: str
    kind: str  # "run" or "cost"
    cell: Cell | None = None
    seed: int = 0
    cost_cells: tuple[Cell, ...] = ()


def _missing(task: str, cells: list[Cell], seeds: range, store: Any) -> list[Job]:
    return [Job(task, "run", c, s) for c in cells for s in seeds if not store.has(c.key, s)]


def _best(cells: list[Cell], store: Any) -> Cell:
    return max(cells, key=lambda c: store.mean_acc(c.key, range(SEEDS)))


def _extend(cells: list[Cell], store: Any, lo: float, hi: float, steps: int) -> Cell | None:
    """The next cell beyond the edge where the best of ``cells`` sits, if any."""
    best = _best(cells, store)
    if best.lr <= lo and steps < MAX_EXTEND:
        return best.with_lr(best.lr / 2)
    if best.lr >= hi and steps < MAX_EXTEND:
        return best.with_lr(best.lr * 2)
    return None


def baseline_cells(store: Any) -> tuple[list[Cell], bool]:
    """The baseline's cells so far and whether the baseline stage is finished."""
    cells = [Cell("sgd", lr) for lr in BASE_LRS]
    while True:
        if any(not store.has(c.key, s) for c in cells for s in range(SEEDS)):
            return cells, False
        lrs = [c.lr for c in cells]
        nxt = _extend(cells, store, min(lrs), max(lrs), len(cells) - len(BASE_LRS))
        if nxt is None:
            return cells, True
        cells.append(nxt)


def family_cells(store: Any, base_lr: float) -> list[Cell]:
    trio = [round(base_lr * f, 6) for f in (0.5, 1.0, 2.0)]
    return [Cell(v, lr, rho, m, sched) for v, (rhos, ms, sched) in FAMILY_GRID.items()
            for rho in rhos for m in ms for lr in trio]


def extended_family(store: Any, base_lr: float) -> tuple[list[Cell], bool]:
    cells = family_cells(store, base_lr)
    if any(not store.has(c.key, s) for c in cells for s in range(SEEDS)):
        return cells, False
    done = True
    for variant in FAMILY_GRID:
        mine = [c for c in cells if c.variant == variant]
        while True:
            best = _best(mine, store)
            line = [c for c in mine if c.with_lr(1.0) == best.with_lr(1.0)]
            lrs = [c.lr for c in line]
            nxt = _extend(line, store, min(lrs), max(lrs), len(line) - 3)
            if nxt is None or nxt in mine:
                break
            mine.append(nxt)
            cells.append(nxt)
            if any(not store.has(nxt.key, s) for s in range(SEEDS)):
                done = False
                break
    return cells, done


def plan(task: str, store: Any) -> list[Job]:
    """The jobs of ``task``'s next unfinished stage (empty when the task is complete)."""
    base, finished = baseline_cells(store)
    if not finished:
        return _missing(task, base, range(SEEDS), store)
    base_lr = _best(base, store).lr
    family, finished = extended_family(store, base_lr)
    if not finished:
        return _missing(task, family, range(SEEDS), store)
    cells = base + family
    costs = sorted({c.cost_key: c for c in cells}.items())
    if any(not store.has_cost(k) for k, _ in costs):
        return [Job(task, "cost", cost_cells=tuple(c for k, c in costs if not store.has_cost(k)))]
    top = topup_cells(cells, store)
    return _missing(task, top, range(SEEDS, SEEDS + TOPUP_SEEDS), store)


def topup_cells(cells: list[Cell], store: Any) -> list[Cell]:
    """The tuned baseline, the best SAM-family cells and the cheapest cells within noise of the
    best, all chosen on the first ``SEEDS`` seeds."""
    seeds = range(SEEDS)
    base = [c for c in cells if c.variant == "sgd"]
    fam = sorted((c for c in cells if c.variant != "sgd"),
                 key=lambda c: -store.mean_acc(c.key, seeds))
    best_all = max(cells, key=lambda c: store.mean_acc(c.key, seeds))
    near = [c for c in cells if within_noise(store, best_all.key, c.key, seeds)]
    cheap = sorted(near, key=lambda c: store.cost(c.cost_key))[:3]
    picked = [_best(base, store), *fam[:TOP_SAM], *cheap]
    return list(dict.fromkeys(picked))
