"""The verdict's statistics: a paired gain, its standard error, and a sequential decision.

A gain of configuration A over the baseline B on the test split has two sources of noise:
training (seed to seed) and the test examples (a sample of what the user will meet). Per test
example i, p_i is the share of A's seeds that classify it correctly, q_i B's; d_i = p_i - q_i.
The gain is mean accuracy(A) - mean accuracy(B), and its standard error

    se = sqrt(var(d) / N + v_A / S_A + v_B / S_B)

The example term var(d) / N already holds the seed noise that flips single examples: p_i is a
mean over seeds, so an example whose outcome changes from seed to seed adds its spread over
S to it. What it lacks is the part of the seed noise shared by every example (a seed that
trains a better or worse model altogether). That is v: the spread of the per-seed accuracies
less what the per-example flips alone give it, var_seeds(acc) - mean_i var_seeds(c_i) / N,
never below 0 (``seed_level_var``; with one seed per side it is unknown and left out). Adding
the whole var_seeds(acc) instead counts the flips twice: on the reference bank the flips are
most of a seed's spread (0.5-0.9 pp of its 0.6-1.3 pp), and the doubled count widened the
bound by 10-25%. Noisy test labels keep it valid:
a label that is wrong for both configurations adds the same to both, so the test stays a test
of whether A and B differ; it only understates the gain on clean labels.

The decision is sequential (``decide``): after each round of seeds,

- ``use`` when gain > Z * se;
- ``keep-baseline`` when gain <= 0, or when the decision is futile: even a gain one standard
  error larger than measured would stay under z (``futility_z``: the best of several
  candidates' z, also for a candidate chosen on validation) times the standard error projected
  for the most seeds the budget allows (z too as it would be then: ``projected_z``, the seed terms'
  df grown with the seeds) (``projected_se``: the seed terms and the flips' share of the
  example term shrink as 1/S, the rest of the example term is kept as it is);
- otherwise ``open``: one more seed for both sides when the budget allows, else
  ``inconclusive``.

Z = 2 for one candidate at one look (about 97.7% one-sided); ``gain_evidence`` raises it for
the seed terms' few df (``critical_z``) and for the looks (``look_bounds``: O'Brien-Fleming
bounds at the looks' information fractions), so that the chance a configuration no better
than the baseline is called ``use`` at some look stays that of one look. With n SAM-family candidates confirmed on the same test data, the one judged is the
best of n noisy gains, so its z is that of the largest of n correlated gains (``joint_z``:
"max-t", from the gains' estimated correlation; at most Bonferroni's, ``z_for``: 2.28 for 2,
2.43 for 3): the chance that any of n configurations no better than the baseline clears it
stays that of one at Z = 2. When the judged candidate was chosen on the validation split
(``_confirm.judged_sam``), its gain is one comparison's and ``use`` needs Z. ``gain_evidence(..., z=)`` records it as ``z`` (and
``z_method``) and ``bound``, and ``decide``, ``final`` and ``seeds_to_settle`` read it from
there.

For another metric than accuracy (``--metric``), ``gain_evidence`` makes the same evidence
from ``Metric.paired_gain`` on the seeds' test predictions: the gain in the metric's utility,
its SE (analytic for a cost, a paired bootstrap over the test examples otherwise), the seed
term from the per-seed utilities as above, and the test-example term the rest of the variance.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from samtune.metrics import Metric

Z = 2.0
_ONE_SIDED = 1.0 - NormalDist().cdf(Z)  # the chance one null gain clears Z se (about 0.023)


def z_for(candidates: int) -> float:
    """The z that ``candidates`` SAM-family configurations judged on the same test data need
    for the best of them to clear it by chance no more often than one does at ``Z``
    (Bonferroni; rounded to two decimals).

    >>> z_for(1), z_for(2), z_for(3), z_for(4)
    (2.0, 2.28, 2.43, 2.53)
    """
    n = max(1, int(candidates))
    return round(NormalDist().inv_cdf(1.0 - _ONE_SIDED / n), 2)


MAX_T_DRAWS = 200_000  # normal draws for the max-t quantile (fixed seed: the same z every time)


def joint_z(candidates: Sequence[dict[str, Any]], baseline: dict[str, Any],
            metric: Metric | None = None) -> tuple[float, str]:
    """The z the best of ``candidates`` (SAM-family confirmation records) must clear against
    ``baseline``, and how it was found: ``"single"``, ``"max-t"`` or ``"bonferroni"``.

    The candidates' gains share the baseline's seeds and the test examples, so they are
    correlated, and Bonferroni's z (``z_for``) is then larger than it needs to be. ``max-t``
    estimates their correlation from the per-example differences (with p_ji the share of
    candidate j's seeds right on example i and q_i the baseline's, cov(g_j, g_k) =
    cov_i(p_j - q, p_k - q) / N + var_seeds(baseline) / S_base, plus candidate j's own seed
    term on the diagonal) and returns the 1 - 0.023 quantile of the largest of n standard
    normals with that correlation (Monte Carlo, fixed seed): a configuration no better than
    the baseline still wins by luck no more often than one would at ``Z``. Never above
    Bonferroni's z, never below ``Z``. Fold runs take their correlation from the per-example
    differences alone; a metric that is not a mean over examples (``--metric`` other than
    accuracy on a test split) gets Bonferroni's z.

    >>> import torch
    >>> base = {"test_accuracy": {"per_seed": [0.5]}, "correct": [torch.tensor([1, 1, 0, 0] * 25).bool()]}
    >>> a = {"test_accuracy": {"per_seed": [0.75]}, "correct": [torch.tensor([1, 1, 1, 0] * 25).bool()]}
    >>> joint_z([a, dict(a)], base)  # two identical candidates are one: z as for one
    (2.0, 'max-t')
    """
    n = len(candidates)
    if n <= 1:
        return Z, "single"
    diffs = _example_differences(candidates, baseline, metric)
    if diffs is None:
        return z_for(n), "bonferroni"
    d = np.stack(diffs)
    cov = np.atleast_2d(np.cov(d)) / d.shape[1]
    if all(c.get("fold_runs") is None for c in (*candidates, baseline)):
        accs_b = _finite(baseline["test_accuracy"]["per_seed"])
        if len(accs_b) > 1:
            cov = cov + seed_level_var(accs_b, baseline.get("correct") or [])[0] / len(accs_b)
        for j, c in enumerate(candidates):
            accs = _finite(c["test_accuracy"]["per_seed"])
            if len(accs) > 1:
                cov[j, j] += seed_level_var(accs, c.get("correct") or [])[0] / len(accs)
    sd = np.sqrt(np.clip(np.diag(cov), 1e-24, None))
    corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    vals, vecs = np.linalg.eigh(corr)  # a square root that tolerates rank deficiency
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    draws = np.random.default_rng(0).standard_normal((MAX_T_DRAWS, n)) @ root.T
    z = float(np.quantile(draws.max(axis=1), 1.0 - _ONE_SIDED))
    return round(min(max(z, Z), z_for(n)), 2), "max-t"


def _example_differences(candidates: Sequence[dict[str, Any]], baseline: dict[str, Any],
                         metric: Metric | None) -> list[np.ndarray] | None:
    """Per candidate, its per-example difference from the baseline (None: not available)."""
    if all(c.get("fold_runs") is not None for c in (*candidates, baseline)):
        out = []
        for c in candidates:
            pairs = [(a, b) for a, b in zip(c["fold_runs"], baseline["fold_runs"])
                     if a is not None and b is not None]
            if not pairs or len(pairs) != sum(b is not None for b in baseline["fold_runs"]):
                return None  # runs diverged on one side only: the examples do not line up
            out.append(torch.cat([torch.as_tensor(a, dtype=torch.float64)
                                  - torch.as_tensor(b, dtype=torch.float64) for a, b in pairs]).numpy())
        return out if len({len(x) for x in out}) == 1 and len(out[0]) > 1 else None
    if metric is not None and metric.name != "accuracy":
        return None
    if not baseline.get("correct") or any(not c.get("correct") for c in candidates):
        return None
    q = torch.stack(baseline["correct"]).double().mean(0)
    out = [(torch.stack(c["correct"]).double().mean(0) - q).numpy() for c in candidates]
    return out if out[0].size > 1 else None


def _z(ev: dict[str, Any]) -> float:
    return ev.get("z", Z)

Verdict = str  # "use", "keep-baseline", "open" or "inconclusive"


def _finite(accs: Sequence[float]) -> list[float]:
    return [a for a in accs if a == a]


def paired_gain(candidate: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Gain of ``candidate`` over ``baseline`` and its standard error, with the two terms.

    Both are confirmation records: ``test_accuracy.per_seed`` (NaN for a diverged seed) and
    ``correct`` (per finite seed, which test examples it got right).

    >>> import torch
    >>> base = {"test_accuracy": {"per_seed": [0.5]}, "correct": [torch.tensor([1, 1, 0, 0] * 25).bool()]}
    >>> sam = {"test_accuracy": {"per_seed": [0.75]}, "correct": [torch.tensor([1, 1, 1, 0] * 25).bool()]}
    >>> ev = paired_gain(sam, base)  # 25 of 100 examples gained, none lost, one seed each
    >>> round(ev["gain"], 2), round(ev["test_se"], 4), ev["seed_se"]
    (0.25, 0.0435, None)
    """
    accs_a = _finite(candidate["test_accuracy"]["per_seed"])
    accs_b = _finite(baseline["test_accuracy"]["per_seed"])
    a, b = candidate.get("correct") or [], baseline.get("correct") or []
    gain = statistics.fmean(accs_a) - statistics.fmean(accs_b) if accs_a and accs_b else math.nan
    test_var, n_test = math.nan, 0
    if a and b:
        d = torch.stack(a).double().mean(0) - torch.stack(b).double().mean(0)
        n_test = d.numel()
        if n_test > 1:
            test_var = d.var().item() / n_test
    seed_var, flip_var, known, terms = 0.0, 0.0, False, []
    for accs, correct in ((accs_a, a), (accs_b, b)):
        if len(accs) > 1:
            level, flips = seed_level_var(accs, correct)
            seed_var += level / len(accs)
            flip_var += flips / len(accs)
            terms.append((level / len(accs), len(accs) - 1))
            known = True
    var = (test_var if math.isfinite(test_var) else 0.0) + seed_var
    se = math.sqrt(var) if (math.isfinite(test_var) or known) else math.nan
    return {
        "gain": gain, "se": se, "bound": Z * se if math.isfinite(se) else math.nan,
        "test_se": math.sqrt(test_var) if math.isfinite(test_var) else math.nan,
        "seed_se": math.sqrt(seed_var) if known else None,
        # the part of the test term that more seeds shrink (the examples' flips, over S)
        "flip_se": math.sqrt(min(flip_var, test_var)) if known and math.isfinite(test_var) else 0.0,
        "df": satterthwaite([(test_var if math.isfinite(test_var) else 0.0, math.inf), *terms]),
        "n_test": n_test, "seeds": [len(accs_a), len(accs_b)],
    }


def satterthwaite(terms: Sequence[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of variance estimates, each (variance, its df): Welch and
    Satterthwaite's (sum v)^2 / sum(v^2 / df); inf when every term with weight is exact
    (df inf: the test term over hundreds of examples), and above ``MAX_DF`` (t is then the
    normal to the second decimal).

    >>> satterthwaite([(1.0, math.inf), (1.0, 2)])  # half the variance from 3 seeds
    8.0
    >>> satterthwaite([(1.0, math.inf), (0.0, 2)])
    inf
    """
    total = sum(v for v, _ in terms)
    den = sum(v * v / df for v, df in terms if v > 0 and math.isfinite(df))
    df = math.inf if den <= 0 or total <= 0 else total * total / den
    return math.inf if df > MAX_DF else df


MAX_DF = 1000.0

# The looks' bounds: O'Brien and Fleming's shape, z_k = c / sqrt(t_k), at each look's
# information fraction t_k (the variance at the most seeds over the variance at look k). The
# z statistics of nested looks are those of a Brownian motion in information time (the gain at
# S seeds is the gain at S + 1 less the last seed's share), so the chance that a configuration
# no better than the baseline clears any look can be computed exactly; c makes it that of one
# look at the candidates' z. Where more seeds add little information (the test examples' own
# noise dominates), the looks are nearly one and c is nearly z; where they add much, the early
# looks ask for more and the last one for little more than one look would (power near a single
# look's: benchmarks/verdict_size.py).
FRACTION_DECIMALS = 3  # information fractions are rounded to this (the bounds are cached)
_GRID = 0.02  # the crossing integral's grid step on the Brownian motion's scale
_FLOOR = -8.0  # the grid's lower end: below it the motion's mass is under 1e-15


def crossing_chance(bounds: Sequence[float], fractions: Sequence[float],
                    drift: float = 0.0) -> float:
    """The chance that a z statistic observed at ``fractions`` of the information (ascending,
    in (0, 1]) clears its bound at one look or more: Z_k = W(t_k) / sqrt(t_k), W a Brownian
    motion with ``drift`` (the z the gain has with all the information), by numerical
    integration over the looks (Armitage, McPherson and Rowe's recursion).

    >>> round(crossing_chance([1.96], [1.0]), 4), round(crossing_chance([2.178, 2.178], [0.5, 1.0]), 3)
    (0.025, 0.025)
    """
    grid = density = weights = None
    before = 0.0
    for b, t in zip(bounds, fractions):
        step = t - before
        if step <= 0:
            continue
        sd = math.sqrt(step)
        top = b * math.sqrt(t)
        lo = _FLOOR + drift * t
        n = max(3, int(math.ceil((top - lo) / min(_GRID, sd / 4))) + 1)
        y = np.linspace(lo, top, n) if top > lo else np.array([top, top, top])
        w = np.full(n, y[1] - y[0])
        w[0] = w[-1] = w[0] / 2
        mean = drift * step
        if grid is None:
            f = np.exp(-0.5 * ((y - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        else:
            kernel = np.exp(-0.5 * ((y[:, None] - grid[None, :] - mean) / sd) ** 2)
            f = kernel @ (density * weights) / (sd * math.sqrt(2 * math.pi))
        grid, density, weights, before = y, f, w, t
    if density is None:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - density @ weights)))


@functools.lru_cache(maxsize=4096)
def _obf_constant(fractions: tuple[float, ...], tail: float) -> float:
    from scipy.optimize import brentq  # noqa: PLC0415 (only a sequential verdict needs it)

    def excess(c: float) -> float:
        return crossing_chance([c / math.sqrt(t) for t in fractions], fractions) - tail

    # the last look alone needs c >= z; Bonferroni over the looks needs no more than z at
    # tail / looks (c / sqrt(t_k) >= that at every look then)
    lo = NormalDist().inv_cdf(1.0 - tail)
    hi = NormalDist().inv_cdf(1.0 - tail / len(fractions)) + 1e-3
    return lo if excess(lo) <= 0 else brentq(excess, lo, hi, xtol=1e-4)


def look_bounds(fractions: Sequence[float], z: float) -> list[float]:
    """Each look's z bound (O'Brien-Fleming shape, c / sqrt(t_k)) so that a configuration no
    better than the baseline clears one of them as often as it would clear ``z`` at a single
    look. ``fractions``: each look's share of the information at the most seeds (ascending,
    the last 1; rounded to ``FRACTION_DECIMALS``; looks that round to the same share are one).

    >>> [round(b, 2) for b in look_bounds([1.0], 2.0)]
    [2.0]
    >>> [round(b, 2) for b in look_bounds([0.5, 2 / 3, 5 / 6, 1.0], 1.96)]  # 3 to 6 seeds
    [2.9, 2.51, 2.25, 2.05]
    """
    fr = [min(1.0, max(10.0 ** -FRACTION_DECIMALS, round(t, FRACTION_DECIMALS))) for t in fractions]
    distinct = tuple(sorted(set(fr)))
    if len(distinct) <= 1:
        return [z] * len(fractions)
    c = _obf_constant(distinct, round(1.0 - NormalDist().cdf(z), 8))
    return [c / math.sqrt(t) for t in fr]


def _se_at(ev: dict[str, Any], seeds: int) -> float:
    """``projected_se`` at any number of seeds, fewer than the evidence's too."""
    test = ev["test_se"] if math.isfinite(ev.get("test_se", math.nan)) else 0.0
    seed = ev.get("seed_se") or 0.0
    now, s = max(1, min(ev["seeds"])), max(1, seeds)
    if ev.get("design") == "folds":
        k = ev.get("k") or max(now, s)
        return math.sqrt(test**2 * min(now, k) / min(s, k) + seed**2 * now / s)
    flips = min(ev.get("flip_se") or 0.0, test)  # the examples' flips average out over seeds too
    return math.sqrt(test**2 - flips**2 + (flips**2 + seed**2) * now / s)


def information_fractions(ev: dict[str, Any], first: int, most: int) -> list[float]:
    """Each look's share of the information the most seeds would have, from ``first`` to
    ``most`` seeds (one look per seed), by the evidence's own split of its variance
    (``projected_se``); without a variance to split, in proportion to the seeds."""
    seeds = range(first, max(first, most) + 1)
    final = _se_at(ev, seeds[-1]) if math.isfinite(ev.get("se", math.nan)) else 0.0
    if not final > 0:
        return [s / seeds[-1] for s in seeds]
    return [(final / _se_at(ev, s)) ** 2 for s in seeds]


def design_looks(records: Sequence[dict[str, Any]], most: int | None) -> tuple[int, int]:
    """(first, most): the seeds of the confirmation's first look (each record's
    ``first_look``, set by ``confirm``; else its seeds now) and the most it allows."""
    first = min(c.get("first_look") or len(c["test_accuracy"]["per_seed"]) for c in records)
    return first, max(first, most or first)


def critical_z(z: float, df: float | None, looks: float = 1.0) -> float:
    """The bound's multiplier: the normal ``z`` (one look, its candidates' multiplicity
    included) as the quantile of Student's t at the evidence's ``df`` with the same tail,
    times ``looks`` (the look's bound over the single look's z: ``look_bounds``).

    >>> critical_z(2.0, math.inf), round(critical_z(2.0, 4), 2), round(critical_z(2.0, math.inf, 1.2), 2)
    (2.0, 2.87, 2.4)
    """
    if df is not None and math.isfinite(df) and df > 0:
        from scipy.stats import t  # noqa: PLC0415 (loads in ~0.1 s; only a verdict needs it)

        z = float(t.isf(NormalDist().cdf(-z), df))
    return round(z * looks, 2)


def seed_level_var(accs: Sequence[float], correct: Sequence[Any]) -> tuple[float, float]:
    """(v, f) of one configuration's seeds: v the variance of its per-seed accuracy that the
    per-example flips do not explain, f the flips' share of it (mean_i var_seeds(c_i) / N).

    ``accs``: the finite seeds' accuracies; ``correct``: per finite seed, which test examples it
    got right (when they do not line up with ``accs``, v is the whole variance and f is 0).

    >>> import torch
    >>> flip = [torch.tensor([1, 0] * 50).bool(), torch.tensor([0, 1] * 50).bool()]
    >>> seed_level_var([0.5, 0.5], flip)  # every example flips, accuracy never moves
    (0.0, 0.005)
    >>> shared = [torch.ones(100).bool(), torch.zeros(100).bool()]
    >>> v, f = seed_level_var([1.0, 0.0], shared)  # one seed right everywhere, one nowhere
    >>> round(v, 3), round(f, 3)
    (0.495, 0.005)
    """
    total = statistics.variance(accs)
    if len(correct) != len(accs) or len(correct) < 2:
        return total, 0.0
    c = torch.stack(list(correct)).double()
    flips = c.var(0).mean().item() / c.shape[1]
    return max(0.0, total - flips), flips


def gain_evidence(candidate: dict[str, Any], baseline: dict[str, Any], metric: Metric | None,
                  y_test: Any = None, *, candidates: int = 1, z: float | None = None,
                  z_method: str | None = None,
                  first_and_most: tuple[int, int] | None = None) -> dict[str, Any]:
    """``paired_gain`` for accuracy (``metric`` None or accuracy); for another metric the same
    keys from ``metric.paired_gain`` on the records' ``pred`` (per finite seed, the class
    predicted for each example of ``y_test``). ``candidates``: how many SAM-family
    configurations were confirmed beside it; ``z`` is ``z_for(candidates)`` unless given
    (``joint_z``'s, with its ``z_method``; kept as ``z_candidates``). The ``z`` recorded, and
    ``bound`` = ``z`` x ``se``, is ``critical_z``'s: that z as a t quantile at the evidence's
    ``df`` (the seed terms are estimated from a few seeds), times this look's bound over one
    look's (``look_bounds``, at the evidence's ``information_fractions``) when the
    confirmation looks once a seed from ``first_and_most[0]`` to ``first_and_most[1]`` seeds
    (recorded: ``looks``, ``look`` (this one, from 1), ``first_look``, ``look_factors``).

    >>> from samtune.metrics import Metric
    >>> y = [0, 0, 1, 1] * 25
    >>> base = {"test_accuracy": {"per_seed": [0.5]}, "pred": [[0, 0, 0, 0] * 25]}
    >>> sam = {"test_accuracy": {"per_seed": [0.75]}, "pred": [[0, 0, 1, 0] * 25]}
    >>> ev = gain_evidence(sam, base, Metric("balanced_accuracy", 2), y)
    >>> round(ev["gain"], 2), ev["seed_se"], ev["seeds"]
    (0.25, None, [1, 1])
    """
    ev = _evidence(candidate, baseline, metric, y_test)
    if z is None:
        z, z_method = z_for(candidates), ("single" if candidates <= 1 else "bonferroni")
    factors, first = [1.0], min(ev["seeds"])
    if first_and_most:
        first, most = first_and_most
        factors = [b / z for b in look_bounds(information_fractions(ev, first, most), z)]
    look = _look(first, len(factors), min(ev["seeds"]))
    df = ev.get("df")
    zc = critical_z(z, df, factors[look])
    ev["df"] = df if df is not None and math.isfinite(df) else None  # None: normal (JSON-safe)
    return {**ev, "z": zc, "z_method": z_method or "given", "z_candidates": z,
            "looks": len(factors), "look": look + 1, "first_look": first,
            "look_factors": [round(f, 4) for f in factors],
            "bound": zc * ev["se"] if math.isfinite(ev["se"]) else math.nan}


def _look(first: int, looks: int, seeds: int) -> int:
    """The index of the look at ``seeds`` seeds among ``looks`` from ``first`` seeds."""
    return min(max(seeds - first, 0), looks - 1)


def _evidence(candidate: dict[str, Any], baseline: dict[str, Any], metric: Metric | None,
              y_test: Any) -> dict[str, Any]:
    if candidate.get("fold_runs") is not None and baseline.get("fold_runs") is not None:
        return fold_gain(candidate, baseline)
    if metric is None or metric.name == "accuracy":
        return paired_gain(candidate, baseline)
    a, b = candidate.get("pred") or [], baseline.get("pred") or []
    seeds = [len(a), len(b)]
    y = np.asarray(y_test.cpu() if hasattr(y_test, "cpu") else y_test, dtype=np.int64)
    if not a or not b:
        return {"gain": math.nan, "se": math.nan, "bound": math.nan, "test_se": math.nan,
                "seed_se": None, "n_test": 0, "seeds": seeds}
    u_a = [metric.utility(y, p) for p in a]
    u_b = [metric.utility(y, p) for p in b]
    known = len(u_a) > 1 or len(u_b) > 1
    flip_var = 0.0
    if len(y) > 1:
        parts = metric.paired_gain_parts(y, a, b)
        gain, test_var, seed_var = parts["gain"], parts["example_var"], parts["seed_var"]
        flip_var = parts["flip_var"]
        se = math.sqrt(test_var + seed_var)
        df = satterthwaite([(test_var, math.inf), *zip(parts["seed_vars"], (len(a) - 1, len(b) - 1))])
    else:  # one test example: no example term, nor flips to tell from the seeds' spread
        terms = [(statistics.variance(u) / len(u), len(u) - 1) for u in (u_a, u_b) if len(u) > 1]
        seed_var = sum(v for v, _ in terms)
        gain, test_var = statistics.fmean(u_a) - statistics.fmean(u_b), math.nan
        se = math.sqrt(seed_var) if known else math.nan
        df = satterthwaite(terms)
    return {
        "gain": gain, "se": se, "bound": Z * se if math.isfinite(se) else math.nan,
        "test_se": math.sqrt(test_var) if math.isfinite(test_var) else math.nan,
        "seed_se": math.sqrt(seed_var) if known else None,
        "flip_se": math.sqrt(flip_var) if known else 0.0, "df": df,
        "n_test": len(y), "seeds": seeds,
    }


def fold_gain(candidate: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """``paired_gain`` for fold runs: run r of both configurations trained on the same rows
    and tested on the same fold, so each run is a paired cluster of test examples.

    ``fold_runs``: per run, each tested example's utility (1/0 correct for accuracy; minus its
    cost for a cost metric), None for a diverged run; only runs both have count. With d the
    per-example differences over the N (run, example) pairs, the gain is their mean; the test
    term var(d) / N; the seed term what the cluster-robust variance, R / (R - 1) * sum_r e_r**2
    / N**2 (e_r: run r's summed difference minus the gain times its size), adds to it, never
    below 0. So se**2 = max(cluster variance, var(d) / N).

    >>> import torch
    >>> base = {"fold_runs": [torch.tensor([1., 0, 0, 1]), torch.tensor([0., 1, 1, 0])], "k": 7}
    >>> sam = {"fold_runs": [torch.tensor([1., 1, 0, 1]), torch.tensor([1., 1, 1, 0])], "k": 7}
    >>> ev = fold_gain(sam, base)  # one example gained in each run
    >>> ev["gain"], ev["n_test"], ev["seeds"], ev["design"]
    (0.25, 8, [2, 2], 'folds')
    """
    pairs = [(a, b) for a, b in zip(candidate["fold_runs"], baseline["fold_runs"])
             if a is not None and b is not None]
    out = {"gain": math.nan, "se": math.nan, "bound": math.nan, "test_se": math.nan,
           "seed_se": None, "n_test": 0, "seeds": [len(pairs)] * 2, "design": "folds",
           "k": candidate.get("k"), "df": math.inf}
    if not pairs:
        return out
    d = [torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)
         for a, b in pairs]
    flat = torch.cat(d)
    n = flat.numel()
    gain = flat.mean().item()
    test_var = flat.var().item() / n if n > 1 else math.nan
    seed_var, known = 0.0, len(d) > 1
    if known:
        resid = torch.tensor([r.sum().item() - gain * r.numel() for r in d], dtype=torch.float64)
        cluster = len(d) / (len(d) - 1) * (resid**2).sum().item() / n**2
        seed_var = max(0.0, cluster - (test_var if math.isfinite(test_var) else 0.0))
    var = (test_var if math.isfinite(test_var) else 0.0) + seed_var
    se = math.sqrt(var) if (math.isfinite(test_var) or known) else math.nan
    out.update(gain=gain, se=se, bound=Z * se if math.isfinite(se) else math.nan,
               test_se=math.sqrt(test_var) if math.isfinite(test_var) else math.nan,
               seed_se=math.sqrt(seed_var) if known else None, n_test=n,
               df=satterthwaite([(test_var if math.isfinite(test_var) else 0.0, math.inf),
                                 (seed_var, len(d) - 1)]))
    return out


def projected_se(ev: dict[str, Any], seeds: int) -> float:
    """The standard error ``ev`` would have with ``seeds`` seeds (runs) on both sides.

    On one test split the seed terms shrink as 1/S, and so does the test term's share that the
    examples' flips make (``flip_se``); the rest of the test term is kept: it is the split's own
    noise. On folds (``design`` "folds") more runs also test more examples:
    the test term shrinks as 1/R up to a full repeat of the ``k`` folds (after which the same
    examples are tested again), the seed term as 1/R."""
    return _se_at(ev, max(seeds, min(ev["seeds"])))


def decide(ev: dict[str, Any], max_seeds: int) -> Verdict:
    """``use``, ``keep-baseline`` or ``open`` (more seeds could decide; ``inconclusive`` when
    none are left: see ``final``), at the evidence's ``z`` (``Z`` when it has none)."""
    gain, se = ev["gain"], ev["se"]
    if not (math.isfinite(gain) and math.isfinite(se)):
        return "keep-baseline"  # nothing to compare (every seed diverged), or no noise estimate
    if gain > _z(ev) * se:
        return "use"
    if gain <= 0 or gain + se <= futility_z(ev, max_seeds) * projected_se(ev, max_seeds):
        return "keep-baseline"
    return "open"


def futility_z(ev: dict[str, Any], seeds: int) -> float:
    """The z of ``decide``'s futility stop at ``seeds`` seeds: ``projected_z``, with the
    evidence's ``futility_z`` (when it has one) in place of its candidates' z. A record chosen
    on validation is judged ``use`` at one comparison's z and stopped for futility at the best
    of several's (``_confirm.judge``); a stop for futility can only lower the chance of a false
    ``use``.

    >>> ev = {"z": 2.0, "z_candidates": 2.0, "df": None, "seeds": [3, 3], "looks": 1,
    ...       "first_look": 3, "look_factors": [1.0]}
    >>> futility_z(ev, 3), futility_z({**ev, "futility_z": 2.4}, 3)
    (2.0, 2.4)
    """
    if "futility_z" not in ev or "z_candidates" not in ev:
        return projected_z(ev, seeds)
    return projected_z({**ev, "z_candidates": ev["futility_z"]}, seeds)


def projected_z(ev: dict[str, Any], seeds: int) -> float:
    """The z the evidence would be judged at with ``seeds`` seeds: the bound of that look
    (``look_factors``), and its seed terms' df grown with the seeds (at least in proportion to
    seeds - 1, which errs strict), so the t quantile falls toward the normal; the candidates'
    z stays. Evidence without ``z_candidates`` keeps its ``z``.

    >>> ev = {"z": 3.0, "z_candidates": 2.0, "df": 4.0, "seeds": [3, 3],
    ...       "looks": 4, "first_look": 3, "look_factors": [1.48, 1.28, 1.15, 1.05]}
    >>> projected_z(ev, 3) == critical_z(2.0, 4.0, 1.48), projected_z(ev, 6)
    (True, 2.4)
    """
    if "z_candidates" not in ev:
        return _z(ev)
    now = max(1, min(ev["seeds"]))
    df = ev.get("df")
    if df is not None and now > 1 and seeds > now:
        df = df * (seeds - 1) / (now - 1)
    factors = ev.get("look_factors") or [1.0]
    first = ev.get("first_look", now)
    return critical_z(ev["z_candidates"], df, factors[_look(first, len(factors), seeds)])


def final(ev: dict[str, Any], max_seeds: int) -> Verdict:
    """The verdict when no more seeds will run: ``open`` becomes ``inconclusive``."""
    verdict = decide(ev, max_seeds)
    return "inconclusive" if verdict == "open" else verdict


def seeds_to_settle(ev: dict[str, Any], most: int = 100) -> int | None:
    """Seeds (runs) per side at which the measured gain, were it the true one, would clear
    z * se (``projected_se``; z: the evidence's, ``Z`` by default); None when no number up to ``most`` would (the test data's own
    noise is above it: more data would settle it, not more seeds)."""
    gain = ev["gain"]
    if not (math.isfinite(gain) and gain > 0 and math.isfinite(ev["se"])):
        return None
    now = max(1, min(ev["seeds"]))
    for seeds in range(now + 1, most + 1):
        if projected_z(ev, seeds) * projected_se(ev, seeds) < gain:
            return seeds
    return None
