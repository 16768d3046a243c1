"""How far the decision benchmark's numbers are from noise: intervals, and paired comparisons.

Every row of ``benchmarks/decision.py`` is one realisation of one search (a task and a search
seed); a change to the search that moves two rows moves the summary by as much as rerunning
it on another machine does. This script puts an interval on each summary measure by resampling
the search seeds within each task (a stratified bootstrap: the bank's tasks are fixed, the
seeds are the sample), and compares two runs row by row, paired by (task, seed), so that the
rows a change could not reach cancel.

    python benchmarks/decision_compare.py results/A.json [results/B.json ...]   # rows pooled
    python benchmarks/decision_compare.py --control results/C.json results/X.json
    python benchmarks/decision_compare.py --control C1.json,C2.json X1.json,X2.json  # seed sets pooled

With ``--control``: the measure of X minus that of C, its interval, and the share of resamples
in which X is better (for regret, claim error, baseline gap, compute and cost: lower is better).
The intervals are percentile intervals (``--level``, 90% by default) over ``--draws`` resamples
(``--seed`` fixes them). They describe the search seeds' noise on this bank, not how the search
would do on other data; with three seeds per task a bootstrap interval is about a fifth too narrow
(it resamples as if the spread of 3 were that of the population), so pool seed sets where they
exist.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from decision import summarize  # noqa: E402  (the benchmark's own summary, drawn again)

Row = dict[str, Any]

# (key of ``decision.summarize``, label, the row field it is made of, True when higher is better)
MEASURES: tuple[tuple[str, str, str, bool], ...] = (
    ("verdict_accuracy", "verdict accuracy", "verdict_correct", True),
    ("inconclusive_share", "inconclusive share", "verdict", False),
    ("regret_pp", "mean regret (pp)", "regret_pp", False),
    ("mean_abs_claimed_gain_error_pp", "mean |claimed-gain error| (pp)", "claimed_gain_error_pp",
     False),
    ("baseline_gap_pp", "mean baseline gap (pp)", "baseline_gap_pp", False),
    ("compute_runs", "compute (baseline runs)", "compute_runs", False),
    ("mean_cost_over_cheapest", "cost over the bank's cheapest near its best",
     "cost_over_cheapest", False),
)


def strata(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """The rows grouped by task, each group in seed order."""
    out: dict[str, list[Row]] = {}
    for r in sorted(rows, key=lambda r: (r["task"], r["seed"])):
        out.setdefault(r["task"], []).append(r)
    return out


def resample(groups: dict[str, list[Any]], rng: random.Random) -> list[Any]:
    """One stratified bootstrap draw: as many items per task as it has, drawn with replacement."""
    return [x for items in groups.values() for x in rng.choices(items, k=len(items))]


def interval(values: Sequence[float], level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``values`` (NaNs dropped).

    >>> interval([4.0, 0.0, 2.0, 1.0, 3.0, math.nan], 0.5)
    (1.0, 3.0)
    """
    v = sorted(x for x in values if math.isfinite(x))
    if not v:
        return math.nan, math.nan
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2

    def q(p: float) -> float:
        pos = p * (len(v) - 1)
        i = math.floor(pos)
        return v[i] if i + 1 >= len(v) else v[i] + (pos - i) * (v[i + 1] - v[i])

    return q(lo_q), q(hi_q)


def summary_intervals(rows: Sequence[Row], *, draws: int = 2000, level: float = 0.9,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Per measure: its value on ``rows`` and the bootstrap interval, {"value", "low", "high"}."""
    rng = random.Random(seed)
    groups = strata(rows)
    boots = [summarize(resample(groups, rng)) for _ in range(draws)]
    whole = summarize(rows)
    out = {}
    for key, *_ in MEASURES:
        lo, hi = interval([b[key] for b in boots], level)
        out[key] = {"value": whole[key], "low": lo, "high": hi}
    return out


def index_rows(rows: Sequence[Row], name: str) -> dict[tuple[str, int], Row]:
    """The rows by (task, seed); raises ValueError when a key appears twice (two result files
    of the same seeds pooled)."""
    out: dict[tuple[str, int], Row] = {}
    for r in rows:
        key = (r["task"], r["seed"])
        if key in out:
            raise ValueError(f"{name} hold {key[0]} seed {key[1]} twice; pool only result files "
                             "of different search seeds")
        out[key] = r
    return out


def pair_rows(control: Sequence[Row], change: Sequence[Row]) -> list[tuple[Row, Row]]:
    """The (control, change) rows of the same (task, seed); raises ValueError when the two runs
    share none, or when a key appears twice in one of them."""
    a, b = index_rows(control, "the control's results"), index_rows(change, "the change's results")
    keys = sorted(a.keys() & b.keys())
    if not keys:
        raise ValueError("the two runs share no (task, seed) row; compare runs of the same tasks "
                         "and search seeds")
    return [(a[k], b[k]) for k in keys]


SEARCH_PATH = ("search_baseline", "n_trials", "n_complete", "n_pruned", "n_complete_searched")


def same_search(pairs: Sequence[tuple[Row, Row]]) -> int:
    """How many pairs took the same search path: the same tuned baseline and the same counts of
    trials, complete, pruned and searched ones (``SEARCH_PATH``). Two runs of one code on one
    host share every path; a change that only judges differently shares them too."""
    return sum(all(a.get(k) == b.get(k) for k in SEARCH_PATH) for a, b in pairs)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (a diverged row on both sides has not moved)."""
    nan = lambda v: isinstance(v, float) and math.isnan(v)  # noqa: E731
    return a == b or (nan(a) and nan(b))


def _difference(pairs: Sequence[tuple[Row, Row]]) -> dict[str, float]:
    change, control = summarize([b for _, b in pairs]), summarize([a for a, _ in pairs])
    return {key: change[key] - control[key] for key, *_ in MEASURES}


def paired_differences(pairs: Sequence[tuple[Row, Row]], *, draws: int = 2000,
                       level: float = 0.9, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per measure: change minus control on the paired rows, its interval, and ``p_better``, the
    share of resamples in which the change is better (ties count half)."""
    rng = random.Random(seed)
    groups: dict[str, list[tuple[Row, Row]]] = {}
    for pair in pairs:
        groups.setdefault(pair[0]["task"], []).append(pair)
    boots = [_difference(resample(groups, rng)) for _ in range(draws)]
    whole = _difference(pairs)
    out = {}
    for key, _, field, higher_better in MEASURES:
        diffs = [b[key] for b in boots]
        finite = [d for d in diffs if math.isfinite(d)]
        sign = 1.0 if higher_better else -1.0
        better = (sum(1.0 if sign * d > 0 else 0.5 if d == 0 else 0.0 for d in finite) / len(finite)
                  if finite else math.nan)
        lo, hi = interval(diffs, level)
        moved = sum(1 for a, b in pairs if not _same(a.get(field), b.get(field)))
        out[key] = {"difference": whole[key], "low": lo, "high": hi, "p_better": better,
                    "rows_moved": moved}
    return out


def load_rows(spec: str) -> list[Row]:
    """The rows of one result file, or of several joined by commas (pooled)."""
    rows: list[Row] = []
    for name in spec.split(","):
        path = Path(name)
        try:
            runs = json.loads(path.read_text())["runs"]
            if not all(isinstance(r, dict) and {"task", "seed", "verdict"} <= r.keys() for r in runs):
                raise ValueError("a run without its task, seed or verdict")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a decision result file ({exc}); pass the .json "
                             "benchmarks/decision.py wrote") from exc
        rows.extend(runs)
    return rows


def load_environments(spec: str) -> list[dict[str, Any]]:
    """Per result file of ``spec``, the environment it recorded (``decision.environment``:
    ``packages``, ``cpu``, ...; an empty dict for a file written before it was kept)."""
    return [json.loads(Path(n).read_text()).get("environment") or {} for n in spec.split(",")]


def package_warning(control: Sequence[dict[str, Any] | None],
                    change: Sequence[dict[str, Any] | None], what: str = "packages") -> str | None:
    """A line naming the packages whose versions differ between the control's files and the
    change's (None when they agree, or when a file did not record them: nothing to check).

    >>> package_warning([{"optuna": "5.0"}], [{"optuna": "5.1"}])
    'warning: the control and the result ran with other packages (optuna 5.0 vs 5.1): their rows differ for that reason too; rerun the control in the same environment'
    >>> package_warning([{"optuna": "5.0"}, None], [{"optuna": "5.1"}]) is None
    True
    """
    if not control or not change or any(p is None for p in (*control, *change)):
        return None
    names = sorted({k for p in (*control, *change) for k in p})
    differ = []
    for name in names:
        a = sorted({str(p.get(name)) for p in control})
        b = sorted({str(p.get(name)) for p in change})
        if a != b:
            differ.append(f"{name} {'/'.join(a)} vs {'/'.join(b)}")
    if not differ:
        return None
    return (f"warning: the control and the result ran with other {what} ({', '.join(differ)}): "
            "their rows differ for that reason too; rerun the control in the same environment")


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", help="decision result files (.json); commas pool files")
    p.add_argument("--control", default=None, metavar="RESULT",
                   help="compare the (one) result given against this one, row by row")
    p.add_argument("--draws", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="the resamples' seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if not 0 < args.level < 1 or args.draws < 1:
        print("error: --level must lie between 0 and 1 and --draws be at least 1", file=sys.stderr)
        return 2
    try:
        if args.control is None:
            rows = [r for spec in args.results for r in load_rows(spec)]
            index_rows(rows, "the results")
            result: dict[str, Any] = {"rows": len(rows), "tasks": len(strata(rows)),
                                      "summary": summary_intervals(rows, draws=args.draws,
                                                                   level=args.level, seed=args.seed)}
        else:
            if len(args.results) != 1:
                raise ValueError("with --control give one result to compare (commas pool files)")
            pairs = pair_rows(load_rows(args.control), load_rows(args.results[0]))
            envs = load_environments(args.control), load_environments(args.results[0])
            for part, what in (("packages", "packages"), ("cpu", "processors")):
                warning = package_warning(*([e.get(part) for e in side] for side in envs), what)
                if warning:
                    print(warning, file=sys.stderr)
            result = {"rows": len(pairs), "tasks": len({a["task"] for a, _ in pairs}),
                      "same_search": same_search(pairs),
                      "differences": paired_differences(pairs, draws=args.draws,
                                                        level=args.level, seed=args.seed)}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result.update(level=args.level, draws=args.draws)
    if args.json:
        print(json.dumps(result))
        return 0
    pct = f"{100 * args.level:g}%"
    print(f"{result['rows']} rows over {result['tasks']} tasks; {pct} intervals from "
          f"{args.draws} resamples of the search seeds within each task")
    if "same_search" in result:
        print(f"  the same search path (tuned baseline, trial counts): {result['same_search']} "
              f"of {result['rows']} rows")
    for key, label, _, _ in MEASURES:
        if "summary" in result:
            s = result["summary"][key]
            print(f"  {label:<46} {_fmt(s['value']):>7}  [{_fmt(s['low'])}, {_fmt(s['high'])}]")
        else:
            d = result["differences"][key]
            print(f"  {label:<46} {d['difference']:+7.2f}  [{_fmt(d['low'])}, {_fmt(d['high'])}]"
                  f"  better in {_fmt(d['p_better'])} of resamples, {d['rows_moved']} rows moved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
