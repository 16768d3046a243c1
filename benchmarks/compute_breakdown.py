"""Where a search's compute goes: one decision-benchmark search per task, under cProfile.

Runs ``samtune.search`` on a bank task exactly as ``benchmarks/decision.py`` does (its defaults,
the task's epochs, one search seed), profiles it, and prints each part's share of the call's wall
time: training steps (search trials and confirmation), the validation passes, the per-epoch
bookkeeping (``trial.report``, ``should_prune``, the history attribute), every other trial
attribute, the confirmation, and all SQL (SQLAlchemy's ``execute`` and ``commit``, which the
other parts include). The parts overlap (a share of the confirmation is training), so they do
not sum to one. Profiling slows Python-heavy parts more than torch's kernels: the bookkeeping's
shares are upper bounds.

    python benchmarks/compute_breakdown.py --tasks breast-cancer,table-clean --seed 0
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

# (label, the profiled function as pstats names it: "file:line(name)" suffix)
PARTS = (
    ("training steps (trials + confirmation)", "_sam.py", "train_step"),
    ("validation passes", "_loop.py", "_predict"),
    ("trial.report", "_trial.py", "report"),
    ("trial.should_prune (pruner + trial reads)", "_trial.py", "should_prune"),
    ("trial.set_user_attr (history + the rest)", "_trial.py", "set_user_attr"),
    ("confirmation (training included)", "_confirm.py", "confirm"),
    ("SQL: SQLAlchemy execute", "orm/session.py", "execute"),
    ("SQL: commits", "orm/session.py", "commit"),
)


def cumulative(stats: pstats.Stats, file_end: str, name: str) -> float:
    """Cumulative seconds of the profiled function ``name`` defined in a file ending so; of
    several (a session's ``commit`` calls its transaction's), the outermost: the largest."""
    return max((v[3] for (file, _line, fn), v in stats.stats.items()  # type: ignore[attr-defined]
                if fn == name and file.endswith(file_end)), default=0.0)


def breakdown(task_name: str, seed: int) -> tuple[float, float, str, list[tuple[str, float]]]:
    import optuna
    import torch
    from bank import cell_of, open_store, truth
    from bank.tasks import TASKS
    from decision import baseline_run_seconds, run_search

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    task = TASKS[task_name]
    store = open_store(task_name)
    t = truth(store)
    base = cell_of(store, t.baseline).config()
    unit = baseline_run_seconds(task, base)
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        profile.enable()
        rec, _ = run_search(task, seed, Path(tmp), {})
        profile.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(profile)
    return wall, unit, rec.verdict, [(label, cumulative(stats, f, n) / wall) for label, f, n in PARTS]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="breast-cancer,table-clean", help="comma-separated bank tasks")
    ap.add_argument("--seed", type=int, default=0, help="the search seed")
    args = ap.parse_args(argv)
    for name in args.tasks.split(","):
        wall, unit, verdict, shares = breakdown(name, args.seed)
        print(f"{name}, seed {args.seed}: {wall:.1f} s under the profiler ({wall / unit:.0f} "
              f"baseline runs of {unit:.2f} s, unprofiled), verdict {verdict}")
        for label, share in shares:
            print(f"  {label:<45} {share:6.1%}")


if __name__ == "__main__":
    main()
