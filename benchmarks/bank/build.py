"""Build (or resume) the reference bank: every task's grid at its full budget.

    python benchmarks/bank/build.py                    # every task, 2 worker processes
    python benchmarks/bank/build.py --tasks shortcut --jobs 1
    python benchmarks/bank/build.py --status           # what is stored, what is missing
    python benchmarks/bank/build.py --truth            # the truth per task, a markdown table

Each worker trains on one torch thread. Runs are appended to ``benchmarks/bank/data/`` as they
finish, so the build can be stopped and resumed at any point; the stage plan (``grid.plan``)
is recomputed from what is stored. Timing lines go to stderr.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import queue
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[1]
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bank.grid import Cell, Job, plan  # noqa: E402
from bank.store import DATA_DIR, Store, compact, encode_u8, task_path, write  # noqa: E402
from bank.tasks import QUICK_TASKS, TASKS, Task  # noqa: E402

ALL_TASKS = {**TASKS, **QUICK_TASKS}

BANK_SEED_OFFSET = 700_000  # bank seeds never coincide with search or confirmation seeds
COST_ROUNDS, COST_STEPS, COST_WARMUP = 15, 20, 25


def bank_seed(seed: int) -> int:
    return BANK_SEED_OFFSET + seed


# -- in a worker -------------------------------------------------------------------------------


def _setup(task: Task):
    from samtune.search._objective import named_model_factory
    from samtune.train import TrainConfig

    ds = task.dataset()
    factory = task.model_factory(ds) or named_model_factory(None, ds)
    batch = TrainConfig().resolve_batch_size(len(ds.x_train))
    return ds, factory, TrainConfig(epochs=task.epochs, batch_size=batch)


def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 1024) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + batch]).argmax(-1) for i in range(0, len(x), batch)])
    return out.cpu().numpy()


def _round(v: Any) -> float | None:
    if not isinstance(v, int | float) or v != v or v in (float("inf"), float("-inf")):
        return None
    return float(f"{v:.5g}")


def train_cell(task: Task, cell: Cell, seed: int) -> dict[str, Any]:
    """Train one cell with one bank seed; the run record the store keeps."""
    from samtune.search._objective import run_config

    ds, factory, tc = _setup(task)
    t0 = time.perf_counter()
    result = run_config(cell.config(), ds, tc, factory, seed=bank_seed(seed))
    seconds = time.perf_counter() - t0
    metrics = sorted({k for r in result.history for k in r if k != "epoch"})
    history = {k: [_round(r.get(k)) for r in result.history] for k in metrics}
    pred = None if result.diverged else predict(result.model, ds.x_test)
    acc = 0.0 if pred is None else float((pred == ds.y_test.numpy()).mean())
    return {"type": "run", "task": task.name, "key": cell.key, "cell": cell.to_dict(),
            "seed": seed, "history": history, "pred": None if pred is None else encode_u8(pred),
            "test_acc": acc, "step_time": _round(result.step_time), "seconds": _round(seconds),
            "epochs": result.epochs_trained, "diverged": result.diverged, "reason": result.reason}


def measure_costs(task: Task, cells: tuple[Cell, ...]) -> list[dict[str, Any]]:
    """Step time of each cell's (variant, m, schedule) over the baseline's, side by side:
    interleaved rounds of ``COST_STEPS`` steps on the task's batches, median over rounds."""
    from samtune.optim import build_optimizer
    from samtune.train import seed_everything

    ds, factory, tc = _setup(task)
    base = Cell("sgd", cells[0].lr)
    setups = []
    for cell in (base, *cells):
        seed_everything(bank_seed(0))
        model = factory()
        model.train()
        opt = build_optimizer(model, cell.config(), total_steps=10**6)
        setups.append((cell, model, opt))
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(ds.x_train), generator=gen)[:tc.batch_size] for _ in range(8)]

    def run(model, opt, steps: int) -> float:
        t0 = time.perf_counter()
        for i in range(steps):
            idx = batches[i % len(batches)]
            opt.train_step(model, ds.x_train[idx], ds.y_train[idx]).loss.item()
        return (time.perf_counter() - t0) / steps

    for _, model, opt in setups:
        run(model, opt, COST_WARMUP)  # msharp="auto" times its implementations here
    times: dict[str, list[float]] = {c.cost_key: [] for c, _, _ in setups}
    for r in range(COST_ROUNDS):
        order = setups[r % len(setups):] + setups[:r % len(setups)]
        for cell, model, opt in order:
            times[cell.cost_key].append(run(model, opt, COST_STEPS))
    base_t = times["sgd"]
    out = []
    for cell in cells:
        ratios = [t / b for t, b in zip(times[cell.cost_key], base_t)]
        out.append({"type": "cost", "task": task.name, "key": cell.cost_key,
                    "ratio": round(statistics.median(ratios), 3),
                    "step_s": _round(statistics.median(times[cell.cost_key])),
                    "base_step_s": _round(statistics.median(base_t)), "rounds": COST_ROUNDS,
                    "steps": COST_STEPS, "batch_size": tc.batch_size})
    return out


def _init_worker() -> None:
    torch.set_num_threads(1)


def do(job: Job) -> tuple[Job, list[dict[str, Any]]]:
    task = ALL_TASKS[job.task]
    if job.kind == "run":
        return job, [train_cell(task, job.cell, job.seed)]
    return job, measure_costs(task, job.cost_cells)


# -- the driver --------------------------------------------------------------------------------


def header(task: Task) -> dict[str, Any]:
    ds, _, tc = _setup(task)
    return {"type": "task", "name": task.name, "description": task.description,
            "kind": task.kind, "model": task.model or "default", "epochs": task.epochs,
            "batch_size": tc.batch_size, "classes": ds.classes, "sizes": ds.split_sizes(),
            "fingerprint": ds.fingerprint, "y_test": encode_u8(ds.y_test.numpy()),
            "torch": torch.__version__, "machine": platform.machine()}


def stores_for(names: list[str], data_dir: Path) -> dict[str, Store]:
    stores = {}
    for name in names:
        store = Store(task_path(name, data_dir))
        if not store.header:
            store.append(header(ALL_TASKS[name]))
        stores[name] = store
    return stores


def _job_weight(job: Job) -> float:
    ms = 2.0 if job.cell is not None and job.cell.m is not None else 1.0
    task = ALL_TASKS[job.task]
    return -(task.epochs * ms * (3 if task.library else 1))


def build(names: list[str], jobs: int, data_dir: Path = DATA_DIR, log=print) -> dict[str, Store]:
    """Run every task's plan to the end. A task's next stage is planned as soon as its current
    stage's last run comes back, so the workers never wait for other tasks."""
    stores = stores_for(names, data_dir)
    t_start = time.monotonic()
    done: queue.Queue = queue.Queue()
    inflight: set[Job] = set()
    finished = 0
    with mp.get_context("spawn").Pool(jobs, initializer=_init_worker) as pool:

        def refill() -> None:
            new = [j for n in names for j in plan(n, stores[n]) if j not in inflight]
            for job in sorted(new, key=_job_weight):
                inflight.add(job)
                pool.apply_async(do, (job,), callback=done.put, error_callback=done.put)

        refill()
        while inflight:
            item = done.get()
            if isinstance(item, BaseException):
                raise item
            job, records = item
            inflight.discard(job)
            for rec in records:
                stores[job.task].append(rec)
            finished += 1
            refill()
            if finished % 25 == 0 or not inflight:
                log(f"{finished} job(s) done, {len(inflight)} queued, "
                    f"{time.monotonic() - t_start:.0f} s elapsed")
    for name in names:
        compact(task_path(name, data_dir))
    log(f"bank complete in {time.monotonic() - t_start:.0f} s")
    return stores


def status(names: list[str], data_dir: Path) -> None:
    for name in names:
        store = Store(task_path(name, data_dir))
        runs = sum(len(v) for v in store.runs.values())
        secs = sum(r.get("seconds") or 0 for v in store.runs.values() for r in v.values())
        nxt = plan(name, store) if store.header else ["(not started)"]
        print(f"{name}: {len(store.runs)} cells, {runs} runs ({secs / 60:.1f} min of training), "
              f"{len(store.costs)} costs; next stage: {len(nxt)} job(s)")


def _cell_text(key: str) -> str:
    """``sam|rho=0.2|m=16|constant|lr=0.16`` -> ``sam rho 0.2 m 16 lr 0.16`` (the schedule when
    it is not the default)."""
    parts = key.split("|")
    words = [parts[0]]
    for part in parts[1:]:
        if "=" in part:
            name, value = part.split("=", 1)
            words += [name, "batch" if value == "None" else value]
        elif part != "constant":
            words.append(part)
    return " ".join(words)


def truth_table(names: list[str], data_dir: Path) -> str:
    """The bank's truth per task as a markdown table (RESULTS.md prints it)."""
    from bank.truth import truth  # noqa: PLC0415

    rows = ["| task | train/val/test, budget | tuned baseline | best SAM-family cell "
            "| gain ± 2 se (pp) | SAM helps | cheapest within noise of the best (cost) |",
            "|---|---|---|---|---|---|---|"]
    runs = 0
    for name in names:
        store = Store(task_path(name, data_dir))
        t = truth(store)
        runs += t.n_runs
        h = store.header
        sizes = "/".join(str(h["sizes"][k]) for k in ("train", "val", "test"))
        rows.append(
            f"| {name} | {sizes}, {h['epochs']} ep "
            f"| {_cell_text(t.baseline)}: {t.baseline_acc:.4f} "
            f"| {_cell_text(t.best_sam)}: {t.best_sam_acc:.4f} "
            f"| {100 * t.gain:+.2f} ± {200 * t.se:.2f} | {'yes' if t.sam_helps else 'no'} "
            f"| {_cell_text(t.cheapest_near_best)} ({t.cheapest_cost:.2f}x) |")
    size = sum(task_path(n, data_dir).stat().st_size for n in names) / 2**20
    return "\n".join(rows) + f"\n\n{runs:,} runs, {size:.1f} MB\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--status", action="store_true", help="print what is stored and exit")
    p.add_argument("--truth", action="store_true",
                   help="print the bank's truth per task as a markdown table and exit")
    p.add_argument("--recost", action="store_true",
                   help="measure every step cost again (the old cost records are dropped)")
    args = p.parse_args(argv)
    names = [n for n in args.tasks.split(",") if n]
    unknown = [n for n in names if n not in ALL_TASKS]
    if unknown:
        print(f"error: unknown task(s) {unknown}; known: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    if args.status:
        status(names, args.data_dir)
        return 0
    if args.truth:
        print(truth_table(names, args.data_dir), end="")
        return 0
    if args.recost:
        for name in names:
            store = Store(task_path(name, args.data_dir))
            store.costs.clear()  # written without its costs; the build measures them again
            write(store, task_path(name, args.data_dir))
    build(names, args.jobs, args.data_dir, log=lambda s: print(s, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
