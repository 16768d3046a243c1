"""Where one default search's time goes: cProfile of ``samtune.search`` on a bank task.

    python benchmarks/profile_search.py breast-cancer      # prints wall time and the top 40

The numbers in RESULTS.md ("Where it goes") come from this script; absolute times on a shared
machine are noise, the split between training, storage and confirmation is what it shows.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    import optuna
    import torch
    from bank.tasks import TASKS

    import samtune

    args = argv if argv is not None else sys.argv[1:]
    name = args[0] if args else "breast-cancer"
    if name not in TASKS:
        print(f"error: unknown bank task {name!r}; choose one of {', '.join(TASKS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    task = TASKS[name]
    with tempfile.TemporaryDirectory() as tmp:
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        rec = samtune.search(task.dataset(), epochs=task.epochs, seed=0, storage=f"sqlite:///{tmp}/s.db",
                             study="profile", out=tmp, progress=False)
        profile.disable()
        print(f"wall {time.perf_counter() - t0:.1f} s; compute {rec.compute}; study {rec.study}")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
