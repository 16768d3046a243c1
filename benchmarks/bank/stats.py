"""Paired statistics over the bank's seeds and test examples.

A gain of configuration A over B on a fixed test split has two sources of noise: training
(seed to seed) and the test examples (the split is a sample of what the user will meet). Per
test example i, p_i is the share of seeds that classify it correctly; d_i = p_i(A) - p_i(B).
The standard error of the gain combines the spread of d over the N examples with the seed
spread of each configuration's accuracy:

    se = sqrt(var(d) / N + var_seeds(A) / S_A + var_seeds(B) / S_B)

(the example term already carries part of the seed noise, so this errs on the wide side). A
gain counts when it exceeds ``Z * se`` (Z = 2, about 95% two-sided). samtune's own verdict
(``samtune/search/_evidence.py``) no longer counts the examples' flips twice; the truth keeps
the wider formula on purpose, as a margin for its own choice of the best of about 130 cells on
the same test examples (a choice the 3 extra seeds do not make independent of them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

Z = 2.0


def paired(store, a: str, b: str, seeds: Iterable[int] | None = None) -> tuple[float, float]:
    """(gain of ``a`` over ``b`` in accuracy, its standard error) over the given seeds."""
    seeds = None if seeds is None else list(seeds)
    sa = [s for s in store.seeds(a) if seeds is None or s in seeds]
    sb = [s for s in store.seeds(b) if seeds is None or s in seeds]
    if not sa or not sb:
        return math.nan, math.nan
    pa = np.mean([store.correct(a, s) for s in sa], axis=0)
    pb = np.mean([store.correct(b, s) for s in sb], axis=0)
    return gain_and_se(pa, pb, [float(store.correct(a, s).mean()) for s in sa],
                       [float(store.correct(b, s).mean()) for s in sb])


def gain_and_se(pa: np.ndarray, pb: np.ndarray, accs_a: list[float],
                accs_b: list[float]) -> tuple[float, float]:
    """Gain and standard error from per-example shares and per-seed accuracies."""
    d = np.asarray(pa, dtype=np.float64) - np.asarray(pb, dtype=np.float64)
    n = len(d)
    var = d.var(ddof=1) / n if n > 1 else 0.0
    for accs in (accs_a, accs_b):
        if len(accs) > 1:
            var += float(np.var(accs, ddof=1)) / len(accs)
    return float(np.mean(accs_a) - np.mean(accs_b)), math.sqrt(var)


def beyond_noise(gain: float, se: float) -> bool:
    return math.isfinite(gain) and gain > Z * se


def within_noise(store, best: str, other: str, seeds: Iterable[int] | None = None) -> bool:
    """``other`` is not worse than ``best`` beyond the noise."""
    if best == other:
        return True
    gain, se = paired(store, best, other, seeds)
    return math.isfinite(gain) and gain <= Z * se
