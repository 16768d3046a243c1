"""The reference bank: fully trained grids over SAM-family configurations on tasks the project
makes offline, with per-epoch curves, per-example test predictions and step costs, and the truth
they imply per task (see ``truth``). Build it with ``python benchmarks/bank/build.py``; read it
with ``load_bank()``.

Reading needs neither torch nor samtune (tasks and build do). Import it with ``benchmarks/`` on ``sys.path`` (the scripts there do).

Importing it puts this checkout first on ``sys.path``, so that a script that imports ``bank``
before ``samtune`` measures the ``samtune`` beside it: run from another worktree, an editable
install of the main checkout would otherwise supply its code, and the numbers would be that
checkout's without a word.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose samtune the benchmarks measure
if (ROOT / "samtune").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bank.grid import SEEDS, Cell  # noqa: E402
from bank.stats import Z, gain_and_se, paired, within_noise  # noqa: E402
from bank.store import DATA_DIR, Store, open_store, task_path  # noqa: E402
from bank.truth import Truth, cell_of, truth  # noqa: E402


def load_bank(names: list[str] | None = None, data_dir: Path = DATA_DIR) -> dict[str, Store]:
    """The stored tasks (every task with a file, or ``names``), each as a ``Store``."""
    stored = sorted(p.name[: -len(".jsonl.gz")] for p in Path(data_dir).glob("*.jsonl.gz"))
    missing = [n for n in names or () if n not in stored]
    if missing:
        raise ValueError(f"no bank task {', '.join(missing)} in {data_dir}; stored: "
                         f"{', '.join(stored) or 'none'} (build with python benchmarks/bank/build.py)")
    return {n: open_store(n, data_dir) for n in (stored if names is None else names)}


__all__ = ["DATA_DIR", "SEEDS", "Z", "Cell", "Store", "Truth", "cell_of", "gain_and_se",
           "load_bank", "open_store", "paired", "task_path", "truth", "within_noise"]
