"""How much of a configuration's seed-to-seed spread is its test examples' flips.

For the tuned baseline and the best SAM-family cell of every bank task (``bank.truth``): the
spread (sd) of the per-seed test accuracy, the part the examples' flips alone give it
(sqrt(mean_i var_seeds(c_i) / N), already in the paired test term of a gain's SE), and the part
the seeds share (the rest, never below 0: ``samtune.search._evidence.seed_level_var``); then
the truth's gain with 2 SE by the bank's formula (every seed's whole spread added) and by
samtune's (the shared part only).

    python benchmarks/seed_spread.py          # under a second; prints a markdown table
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bank import load_bank, truth  # noqa: E402
from bank.stats import paired  # noqa: E402
from bank.store import DATA_DIR  # noqa: E402


def parts(store, key: str) -> tuple[float, float, float, np.ndarray]:
    """(spread, flips' part, shared part) as variances of one seed's accuracy (samtune's own
    ``seed_level_var``), and the per-example share of seeds right."""
    import torch  # noqa: PLC0415

    from samtune.search._evidence import seed_level_var  # noqa: PLC0415

    correct = [torch.from_numpy(np.asarray(store.correct(key, s), dtype=bool)) for s in store.seeds(key)]
    accs = [float(c.double().mean()) for c in correct]
    level, flips = seed_level_var(accs, correct)
    spread = float(np.var(accs, ddof=1))
    return spread, flips, level, torch.stack(correct).double().mean(0).numpy()


def narrow_se(store, a: str, b: str) -> float:
    (_, _, va, pa), (_, _, vb, pb) = parts(store, a), parts(store, b)
    d = pa - pb
    return math.sqrt(d.var(ddof=1) / len(d) + va / len(store.seeds(a)) + vb / len(store.seeds(b)))


def main(argv: list[str] | None = None) -> int:
    try:
        stores = load_bank(None, DATA_DIR)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def pp(v: float) -> str:
        return f"{100 * math.sqrt(v):.2f}"

    print("| task | tuned baseline: seed spread / flips' part / shared part (pp) | best SAM-family "
          "cell | gain | 2 SE, bank's formula | 2 SE, samtune's |")
    print("|---|---|---|---|---|---|")
    for name, store in stores.items():
        t = truth(store)
        cols = [" / ".join(pp(x) for x in parts(store, k)[:3]) for k in (t.baseline, t.best_sam)]
        gain, se = paired(store, t.best_sam, t.baseline)
        print(f"| {name} | {cols[0]} | {cols[1]} | {100 * gain:+.2f} | {200 * se:.2f} | "
              f"{200 * narrow_se(store, t.best_sam, t.baseline):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
