"""Decision benchmark: is samtune's answer right? The real search, scored against the bank.

For every bank task and search seed, runs ``samtune.search`` with its defaults (only
``epochs`` set to the task's budget, and ``seed``) on the task's data, or, for the task with a
user's own model, ``samtune.autoconfigure`` on that model and the raw pool tensors, as a user
would. Each outcome is scored against the bank's truth (``benchmarks/bank``):

- ``verdict_correct``: "use" when the bank says SAM helps, "keep-baseline" when it does not
  ("inconclusive" is never correct; the summary also gives the share of inconclusive verdicts
  and the accuracy of the decided ones);
- ``regret_pp``: the bank's best test accuracy minus that of the recommended configuration;
- ``claimed_gain_error_pp``: the gain the recommendation claims minus the gain of its
  configuration over the bank's tuned baseline;
- ``baseline_gap_pp``: the bank's tuned baseline minus the baseline the search compared against;
- ``compute_runs``: the call's wall time (confirmation included) in units of one training run of
  the bank's tuned baseline, timed in the same process before and after the call;
- ``bank_cost``: the bank's step-cost ratio of the recommended configuration's (variant, m,
  schedule) (None when the bank has no cost for it, e.g. a perturb schedule), and, where the
  bank says SAM helps and the verdict is "use", ``cost_over_cheapest``: that over the bank's
  cheapest cell within noise of its best (``truth.cheapest_cost``); 1 is as cheap as the bank's
  answer (the summary's ``mean_cost_over_cheapest``).

A configuration that is not a bank cell (the search's rho and lr are continuous) is retrained in
the bank's protocol (its data, model, budget and first ``SEEDS`` seeds) and cached in
``benchmarks/results/decision_cache/``. Accuracies are on the clean test labels.

    python benchmarks/decision.py                    # every bank task x 3 seeds, 2 processes
    python benchmarks/decision.py --tasks shortcut --seeds 0
    python benchmarks/decision.py --quick --json     # a tiny task and bank, in seconds
    python benchmarks/decision.py --rescore results/decision.json   # against the bank as it is now
    python benchmarks/decision.py --option trials=12 --keep-studies /tmp/studies   # other options

Writes ``benchmarks/results/decision.json`` (``tasks``, ``runs``, ``summary``) unless --quick.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import math
import multiprocessing as mp
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bank import SEEDS, Cell, Store, cell_of, load_bank, truth  # noqa: E402
from bank.store import DATA_DIR  # noqa: E402

from samtune.search import SearchOptions  # noqa: E402

RESULTS = BENCHMARKS / "results"
DEFAULT_OUT = RESULTS / "decision.json"
CACHE_DIR = RESULTS / "decision_cache"
FIELDS = ("verdict_correct", "regret_pp", "claimed_gain_error_pp", "baseline_gap_pp", "compute_runs")


# packages whose versions change a search's path (the sampler, the float paths) or its scoring
PACKAGES = ("samtune", "torch", "optuna", "numpy", "scipy", "scikit-learn", "sqlalchemy")


def environment() -> dict[str, Any]:
    """What the rows were measured with: the Python, the versions of ``PACKAGES`` and the
    checkout's commit (``+dirty`` with uncommitted changes in ``samtune/``; None outside git). Two runs with
    other packages take other search paths (a fresh install of the same ranges can change
    TPE's draws), so ``decision_compare.py`` warns when a control's differs."""
    from importlib import metadata  # noqa: PLC0415

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    root = BENCHMARKS.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "samtune"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "packages": versions, "commit": commit,
            "cpu": cpu()}


def cpu() -> dict[str, Any]:
    """The processor the rows ran on: /proc/cpuinfo's model name, family, model and stepping,
    a digest of its feature flags, and the instruction set torch dispatches its CPU kernels to.
    The same code and packages on another processor take other search paths: the float results
    of torch's kernels differ in their last bits, and a search amplifies them (RESULTS.md, "The
    same code on two hosts")."""
    import torch  # noqa: PLC0415

    fields: dict[str, Any] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor's block
                name, _, value = line.partition(":")
                name, value = name.strip(), value.strip()
                if name in ("model name", "cpu family", "model", "stepping"):
                    fields[name.replace(" ", "_")] = value
                elif name == "flags":
                    fields["flags_md5"] = hashlib.md5(value.encode()).hexdigest()[:12]
    except OSError:
        fields["model_name"] = platform.processor() or None
    fields["torch_capability"] = torch.backends.cpu.get_cpu_capability()
    return fields


# -- the configuration's accuracy in the bank's protocol ----------------------------------------


def config_key(config_dict: dict[str, Any]) -> str:
    return "cfg:" + hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:16]


def bank_key(store: Store, config) -> str | None:
    """The bank cell that trains exactly ``config`` (None when it is not a cell)."""
    cell = Cell.from_config(config)
    if cell.key in store.runs and len(store.seeds(cell.key)) >= SEEDS:
        if cell.config().to_dict() == config.to_dict():
            return cell.key
    return None


@contextlib.contextmanager
def cache_lock(path: Path):
    """Hold an exclusive lock on the task's cache file: the searches of one task run in
    parallel workers, and two appending gzip members at once corrupt the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_cache(path: Path, header: dict[str, Any]) -> Store:
    """The task's cache of retrained configurations, emptied when it belongs to another version
    of the task's data (its header's fingerprint differs)."""
    with cache_lock(path):
        cache = Store(path)
        if cache.header.get("fingerprint") != header.get("fingerprint"):
            path.unlink(missing_ok=True)
            cache = Store(path)
            cache.append(header)
    return cache


def accuracy(task, store: Store, cache: Store, config) -> tuple[float, bool]:
    """Mean clean-test accuracy of ``config`` over the bank's seeds; whether it is a bank cell."""
    key = bank_key(store, config)
    if key is not None:
        return store.mean_acc(key), True
    ckey = config_key(config.to_dict())
    for seed in range(SEEDS):
        if not cache.has(ckey, seed):
            record = retrain(task, config, seed, ckey)
            with cache_lock(cache.path):
                cache.append(record)
    return cache.mean_acc(ckey, range(SEEDS)), False


def retrain(task, config, seed: int, key: str) -> dict[str, Any]:
    from bank.build import _setup, bank_seed, predict
    from bank.store import encode_u8

    from samtune.search._objective import run_config

    ds, factory, tc = _setup(task)
    result = run_config(config, ds, tc, factory, seed=bank_seed(seed))
    pred = None if result.diverged else predict(result.model, ds.x_test)
    return {"type": "run", "task": task.name, "key": key, "config": config.to_dict(),
            "seed": seed, "history": {}, "pred": None if pred is None else encode_u8(pred),
            "diverged": result.diverged}


def bank_cost(store: Store, config) -> float | None:
    """The bank's step-cost ratio of ``config``'s (variant, m, schedule); None when the bank
    has none. The bank's cells perturb every step; under a perturb schedule that perturbs a
    share s of the task's steps the cost is 1 + s (c - 1), c the every-step cost (a step that
    does not perturb costs a base step: RESULTS.md, issue 16's step table)."""
    cost = store.cost(Cell.from_config(config).cost_key)
    if not math.isfinite(cost):
        return None
    if config.perturb == "always":
        return cost
    h = store.header
    total = h["epochs"] * (h["sizes"]["train"] // h["batch_size"])
    share = config.perturb_schedule(total).share(total)
    return round(1.0 + share * (cost - 1.0), 3)


def baseline_run_seconds(task, config) -> float:
    from bank.build import _setup

    from samtune.search._objective import run_config

    ds, factory, tc = _setup(task)
    t0 = time.perf_counter()
    run_config(config, ds, tc, factory, seed=0)
    return time.perf_counter() - t0


# -- one search ---------------------------------------------------------------------------------


def run_search(task, seed: int, folder: Path, options: dict[str, Any]):
    """The recommendation samtune gives on ``task`` with search seed ``seed``, as a user runs it."""
    import torch

    import samtune

    storage = f"sqlite:///{folder / f'{task.name}-s{seed}.db'}"
    if task.library:
        xp, yp, _, _ = task.make()
        torch.manual_seed(seed)
        ds = task.dataset()
        model = task.model_factory(ds)()
        auto_options = dict(options)
        if "trials" in auto_options:  # autoconfigure's name for it
            auto_options["budget"] = auto_options.pop("trials")
        auto = samtune.autoconfigure(
            model, (torch.as_tensor(xp), torch.as_tensor(yp)), epochs=task.epochs,
            storage=storage, seed=seed, out=str(folder / f"{task.name}-s{seed}"), **auto_options)
        return auto.recommendation, storage
    rec = samtune.search(task.dataset(), epochs=task.epochs, seed=seed, storage=storage,
                         study=f"{task.name}-s{seed}", out=str(folder / f"{task.name}-s{seed}"),
                         progress=False, **options)
    return rec, storage


def trial_counts(storage: str, study: str) -> dict[str, int]:
    import optuna
    from optuna.trial import TrialState

    from samtune.search._stages import searched

    s = optuna.load_study(study_name=study, storage=storage)
    trials = s.get_trials(deepcopy=False)
    warm = [t for t in trials if "fixed_params" in t.system_attrs]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {"n_trials": len(trials), "n_complete": len(complete),
            "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "n_warm_start": len(warm),
            "n_complete_searched": sum(searched(t) for t in complete)}


def score(job: tuple[str, int, str, str, dict[str, Any], str | None]) -> dict[str, Any]:
    """Run one search and score it (in a worker process); with ``keep`` a folder, its study
    database is copied there."""
    name, seed, data_dir, cache_dir, options, keep = job
    import optuna
    import torch
    from bank.tasks import QUICK_TASKS, TASKS

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    task = {**TASKS, **QUICK_TASKS}[name]
    store = Store(Path(data_dir) / f"{name}.jsonl.gz")
    cache_path = Path(cache_dir) / f"{name}.jsonl.gz"
    cache = open_cache(cache_path, store.header)
    t = truth(store)
    base_config = cell_of(store, t.baseline).config()
    unit = [baseline_run_seconds(task, base_config)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rec, storage = run_search(task, seed, Path(tmp), options)
        wall = time.perf_counter() - t0
        counts = trial_counts(storage, rec.study["name"])
        if keep is not None:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy2(storage.removeprefix("sqlite:///"), Path(keep))
    unit.append(baseline_run_seconds(task, base_config))
    acc, in_bank = accuracy(task, store, cache, rec.config)
    base_acc, _ = accuracy(task, store, cache, rec.baseline_config)
    actual_gain = acc - t.baseline_acc
    run_unit = statistics.fmean(unit)
    cost = bank_cost(store, rec.config)
    over_cheapest = (cost / t.cheapest_cost if cost is not None and t.sam_helps
                     and rec.verdict == "use" and 0 < t.cheapest_cost < math.inf else None)
    return {
        "task": name, "seed": seed, "verdict": rec.verdict,
        "true_verdict": "use" if t.sam_helps else "keep-baseline",
        "verdict_correct": rec.verdict == ("use" if t.sam_helps else "keep-baseline"),
        "config": rec.config.describe(), "config_is_bank_cell": in_bank,
        "test_acc": acc, "regret_pp": 100 * (t.best_acc - acc),
        "claimed_gain_pp": 100 * rec.gain, "actual_gain_pp": 100 * actual_gain,
        "claimed_gain_error_pp": 100 * (rec.gain - actual_gain),
        "search_baseline": rec.baseline_config.describe(), "search_baseline_acc": base_acc,
        "baseline_gap_pp": 100 * (t.baseline_acc - base_acc),
        "compute_runs": wall / run_unit, "wall_s": round(wall, 1),
        "baseline_run_s": round(run_unit, 2), "cost_multiplier": rec.cost_multiplier,
        "bank_cost": cost, "cost_over_cheapest": over_cheapest,
        "summary": rec.summary, "confirm_seeds": rec.evidence.get("seeds"), **counts,
    }


def rescore(run: dict[str, Any], t) -> dict[str, Any]:
    """``run`` (a stored result) scored again against the bank's truth ``t``, as it stands now
    (a bank whose grid grew may say otherwise). The configurations' accuracies are the stored
    ones: only the truth's side of each measure is recomputed."""
    helps = "use" if t.sam_helps else "keep-baseline"
    actual_gain = run["test_acc"] - t.baseline_acc
    cost = run.get("bank_cost")
    over_cheapest = (cost / t.cheapest_cost if cost is not None and t.sam_helps
                     and run["verdict"] == "use" and 0 < t.cheapest_cost < math.inf else None)
    return {**run, "true_verdict": helps, "verdict_correct": run["verdict"] == helps,
            "regret_pp": 100 * (t.best_acc - run["test_acc"]),
            "actual_gain_pp": 100 * actual_gain,
            "claimed_gain_error_pp": run["claimed_gain_pp"] - 100 * actual_gain,
            "baseline_gap_pp": 100 * (t.baseline_acc - run["search_baseline_acc"]),
            "cost_over_cheapest": over_cheapest}


# -- the table -----------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str, f=lambda v: v) -> float:
        vals = [f(r[key]) for r in runs if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
        return statistics.fmean(vals) if vals else math.nan

    out = {k: mean(k) for k in FIELDS}
    out["verdict_accuracy"] = out.pop("verdict_correct")
    out["mean_abs_claimed_gain_error_pp"] = mean("claimed_gain_error_pp", abs)
    out["worst_regret_pp"] = max((r["regret_pp"] for r in runs), default=math.nan)
    out["mean_complete_searched"] = mean("n_complete_searched")
    out["mean_cost_over_cheapest"] = mean("cost_over_cheapest")
    decided = [r for r in runs if r["verdict"] != "inconclusive"]
    out["inconclusive_share"] = 1 - len(decided) / len(runs) if runs else math.nan
    out["decided_accuracy"] = (statistics.fmean(r["verdict_correct"] for r in decided)
                               if decided else math.nan)
    out["n_runs"] = len(runs)
    return out


def table(tasks: list[dict[str, Any]], runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = ["task                 helps  seed verdict        ok  regret  claim_err  base_gap  runs  searched  cost  config"]
    helps = {t["name"]: t["sam_helps"] for t in tasks}
    for r in sorted(runs, key=lambda r: (r["task"], r["seed"])):
        lines.append(
            f"{r['task']:<20} {'yes' if helps[r['task']] else 'no':<6} {r['seed']:>4} "
            f"{r['verdict']:<14} {'Y' if r['verdict_correct'] else 'N':<3} {r['regret_pp']:>6.2f} "
            f"{r['claimed_gain_error_pp']:>10.2f} {r['baseline_gap_pp']:>9.2f} "
            f"{r['compute_runs']:>5.1f} {r['n_complete_searched']:>9}  "
            f"{'-' if r.get('bank_cost') is None else format(r['bank_cost'], '.2f'):>4}  {r['config']}")
    s = summary
    lines.append(
        f"summary over {s['n_runs']} runs: verdict accuracy {s['verdict_accuracy']:.2f} "
        f"(inconclusive {s['inconclusive_share']:.2f}, decided ones right {s['decided_accuracy']:.2f}), mean regret "
        f"{s['regret_pp']:.2f} pp (worst {s['worst_regret_pp']:.2f}), mean |claimed-gain error| "
        f"{s['mean_abs_claimed_gain_error_pp']:.2f} pp, mean baseline gap {s['baseline_gap_pp']:.2f} pp, "
        f"compute {s['compute_runs']:.1f} baseline runs, searched trials completed "
        f"{s['mean_complete_searched']:.1f}, cost over the bank's cheapest near its best "
        f"{s['mean_cost_over_cheapest']:.2f}")
    return "\n".join(lines)


def task_rows(stores: dict[str, Store]) -> list[dict[str, Any]]:
    rows = []
    for name, store in stores.items():
        t = truth(store)
        rows.append({"name": name, "sam_helps": t.sam_helps, "bank_best": t.best_acc,
                     "bank_baseline": t.baseline_acc, "best_cell": t.best,
                     "baseline_cell": t.baseline, "best_sam_cell": t.best_sam,
                     "best_sam": t.best_sam_acc, "gain_pp": 100 * t.gain, "se_pp": 100 * t.se,
                     "cheapest_near_best": t.cheapest_near_best, "cheapest_cost": t.cheapest_cost,
                     "best_cost": t.best_cost, "n_cells": t.n_cells, "n_runs": t.n_runs})
    return rows


def quick_bank(folder: Path) -> Path:
    """A hand-picked bank of three cells x ``SEEDS`` seeds for the tiny quick task."""
    from bank.build import header, train_cell
    from bank.tasks import QUICK_TASKS

    task = QUICK_TASKS["tiny"]
    store = Store(folder / "tiny.jsonl.gz")
    store.append(header(task))
    for cell in (Cell("sgd", 0.05), Cell("sgd", 0.1), Cell("sam", 0.05, 0.05)):
        for seed in range(SEEDS):
            store.append(train_cell(task, cell, seed))
    for key in ("sgd", "sam|m=None|constant"):
        store.append({"type": "cost", "key": key, "ratio": 1.0 if key == "sgd" else 2.0})
    return folder


def parse_option(text: str) -> tuple[str, Any]:
    """``"trials=12"`` -> ``("trials", 12)``; numbers become int or float, the rest stays text.

    >>> parse_option("trials=12"), parse_option("pruner=median"), parse_option("max_cost=1.5")
    (('trials', 12), ('pruner', 'median'), ('max_cost', 1.5))
    """
    name, eq, value = text.partition("=")
    if not eq or not name.strip().isidentifier():
        raise ValueError(f"--option {text!r}: write NAME=VALUE, e.g. --option trials=12")
    for kind in (int, float):
        try:
            return name.strip(), kind(value)
        except ValueError:
            pass
    return name.strip(), value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=None, help="comma-separated bank tasks (default: all stored)")
    p.add_argument("--seeds", default="0,1,2", help="search seeds")
    p.add_argument("--jobs", type=int, default=2, help="searches run side by side (one thread each)")
    p.add_argument("--quick", action="store_true", help="a tiny task and bank, a tiny search")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", type=Path, default=None, help=f"result file (default {DEFAULT_OUT})")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a search option for every search, e.g. --option trials=12 (repeatable; "
                        "the names are samtune.search's keyword arguments)")
    p.add_argument("--keep-studies", type=Path, default=None, metavar="DIR",
                   help="copy each search's study database (<task>-s<seed>.db) into DIR")
    p.add_argument("--rescore", type=Path, default=None, metavar="RESULT",
                   help="score a stored result file again against the bank as it is now "
                        "(no search runs; written only with --out)")
    args = p.parse_args(argv)
    if args.rescore is not None:
        return rescore_file(args.rescore, args.out, args.json)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    try:
        extra = dict(parse_option(o) for o in args.option)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    known = {f.name for f in dataclasses.fields(SearchOptions)}
    if unknown := sorted(set(extra) - known):
        print(f"error: --option {', '.join(unknown)}: not a search option; known: "
              f"{', '.join(sorted(known))}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {}
    tmp = None
    if args.quick:
        tmp = tempfile.TemporaryDirectory()
        data_dir = quick_bank(Path(tmp.name))
        cache_dir = Path(tmp.name) / "cache"
        names, seeds = ["tiny"], seeds[:1]
        options = {"trials": 4, "confirm_seeds": 1, "space": "quick"}
    else:
        data_dir, cache_dir = DATA_DIR, CACHE_DIR
        names = args.tasks.split(",") if args.tasks else None
    options.update(extra)
    try:
        stores = load_bank(names, data_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not stores:
        print(f"error: no bank tasks in {data_dir}; build them with python benchmarks/bank/build.py",
              file=sys.stderr)
        return 2
    keep = None if args.keep_studies is None else str(args.keep_studies)
    jobs = [(n, s, str(data_dir), str(cache_dir), options, keep) for s in seeds for n in stores]
    t0 = time.monotonic()
    if args.jobs > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = []
            for r in pool.imap_unordered(score, jobs):
                runs.append(r)
                print(f"[{time.monotonic() - t0:.0f} s] {r['task']} seed {r['seed']}: {r['verdict']} "
                      f"{r['config']} regret {r['regret_pp']:.2f} pp", file=sys.stderr, flush=True)
    else:
        runs = [score(j) for j in jobs]
    tasks = task_rows(stores)
    summary = summarize(runs)
    result = {"benchmark": "decision", "quick": args.quick,
              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": platform.platform(), "environment": environment(),
              "seeds": seeds, "options": options,
              "wall_s": round(time.monotonic() - t0, 1),
              "tasks": tasks, "runs": sorted(runs, key=lambda r: (r["task"], r["seed"])),
              "summary": summary}
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print(table(tasks, runs, summary))
    if tmp is not None:
        tmp.cleanup()
    return 0


def rescore_file(path: Path, out: Path | None, as_json: bool) -> int:
    try:
        stored = json.loads(path.read_text())
        runs = stored["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {path}: not a decision result file ({exc}); pass the .json "
              "benchmarks/decision.py wrote", file=sys.stderr)
        return 2
    names = sorted({r["task"] for r in runs})
    try:
        stores = load_bank(names, DATA_DIR)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    truths = {n: truth(store) for n, store in stores.items()}
    runs = [rescore(r, truths[r["task"]]) for r in runs]
    tasks = task_rows(stores)
    result = {**stored, "rescored": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "tasks": tasks, "runs": runs, "summary": summarize(runs)}
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result) if as_json else table(tasks, runs, result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
