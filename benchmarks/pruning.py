"""Does the forgetting pruner save compute without worse recommendations? Measured side by side.

For each data set and seed, the same search (same trials, epochs, space, sampler seed, data split
and confirmation seeds) runs once per pruner in ``none``, ``median``, ``hyperband`` and
``forgetting``, each with its own SQLite file in a temporary folder, in one process on one torch
thread. Per run:

- ``search_epochs``: epochs trained by all trials of the search (the sum of every trial's history
  length, which is the recommendation's ``compute["search_epochs"]``);
- ``search_s``: wall time of the trial phase (first trial start to last trial end) and ``total_s``
  of the whole ``samtune.search`` call (confirmation included);
- ``test_acc``: the recommendation's mean test accuracy over the confirmation seeds (the
  confirmation step is the same for every pruner: same seeds, same budget, same top-k).

Against the ``none`` run of the same data set and seed: ``epochs_ratio``, ``time_ratio`` (trial
phase) and ``regret_pp`` = 100 x (test_acc of none - test_acc of the pruner), positive = worse.
The order of the pruners rotates from one seed to the next, so a slow phase of a shared machine
does not always hit the same pruner.

Data sets: any built-in (``digits``, ``wine``, ``breast_cancer``) and ``NAME-noisyP``: the
built-in with P% of its training labels replaced by a different random class (validation and
test labels stay clean).

A second part measures the end-to-end cost of ``samtune search --data builtin:digits`` with
its defaults: the wall time of the call, next to one training run of the recommended
configuration at the same budget (timed before and after the search, in the same process).

    python benchmarks/pruning.py                  # ~25 min; writes benchmarks/results/pruning.{json,md}
    python benchmarks/pruning.py --json           # the same, one JSON object on stdout
    python benchmarks/pruning.py --quick --json   # ~15 s on wine; writes nothing unless --out
    python benchmarks/pruning.py --end-to-end only    # just the end-to-end part (merged into --out)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

import samtune
from samtune.data import Dataset, load_data
from samtune.search import PRUNERS, SearchOptions
from samtune.search._objective import run_config
from samtune.train import TrainConfig

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "pruning.json"
DATASETS = ("digits", "breast_cancer", "digits-noisy20", "breast_cancer-noisy20")
TARGET_EPOCHS_RATIO = 0.5  # the forgetting pruner trains at most half the epochs of none
TARGET_REGRET_PP = 0.5  # with a mean regret of at most 0.5 percentage points


# -- data -------------------------------------------------------------------------------------


def make_dataset(name: str, seed: int) -> Dataset:
    """The built-in ``name`` split with ``seed``; ``NAME-noisyP`` flips P% of training labels."""
    base, _, noise = name.partition("-noisy")
    ds = load_data(f"builtin:{base}", seed=seed)
    if not noise:
        return ds
    fraction = int(noise) / 100
    rng = np.random.default_rng(seed)
    y = ds.y_train.clone()
    flipped = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
    shift = rng.integers(1, ds.num_classes, size=len(flipped))  # never the true class
    y[flipped] = (y[flipped] + torch.as_tensor(shift)) % ds.num_classes
    return dataclasses.replace(
        ds, y_train=y, source=f"{base}-noisy{noise}",
        fingerprint=f"{ds.fingerprint}-noisy{noise}-seed{seed}",
    )


# -- one run ------------------------------------------------------------------------------------


def run_search(data: Dataset, name: str, seed: int, pruner: str, folder: Path,
               args: argparse.Namespace) -> dict[str, Any]:
    study = f"{name}-s{seed}-{pruner}"
    t0 = time.monotonic()
    rec = samtune.search(
        data, trials=args.trials, epochs=args.epochs, pruner=pruner, seed=seed,
        storage=f"sqlite:///{folder / study}.db", study=study, out=str(folder / study),
        confirm_seeds=args.confirm_seeds, top_k=args.top_k, space=args.space, progress=False,
    )
    total_s = time.monotonic() - t0
    stored = optuna.load_study(study_name=study, storage=f"sqlite:///{folder / study}.db")
    frozen = stored.get_trials(deepcopy=False)
    epochs = sum(len(t.user_attrs.get("history", [])) for t in frozen)
    assert epochs == rec.compute["search_epochs"], (epochs, rec.compute)
    starts = [t.datetime_start for t in frozen if t.datetime_start]
    ends = [t.datetime_complete for t in frozen if t.datetime_complete]
    reasons: dict[str, int] = {}
    for t in frozen:
        reason = t.user_attrs.get("prune_reason")
        if reason:
            kind = reason.split(":")[0].split(" ")[0] if not reason[0].isdigit() else "other"
            reasons[kind] = reasons.get(kind, 0) + 1
    return {
        "dataset": name, "seed": seed, "pruner": pruner,
        "search_epochs": epochs,
        "confirmation_epochs": rec.compute["confirmation_epochs"],
        "search_s": round((max(ends) - min(starts)).total_seconds(), 2),
        "total_s": round(total_s, 2),
        "test_acc": rec.test_accuracy["mean"],
        "test_std": rec.test_accuracy["std"],
        "verdict": rec.verdict,
        "config": rec.config.describe(),
        "n_complete": rec.study["n_complete"],
        "n_pruned": rec.study["n_pruned"],
        "prune_reasons": reasons,
    }


def compare(runs: list[dict[str, Any]]) -> None:
    """Add epochs_ratio, time_ratio and regret_pp against the none run of the same data/seed."""
    none = {(r["dataset"], r["seed"]): r for r in runs if r["pruner"] == "none"}
    for r in runs:
        ref = none.get((r["dataset"], r["seed"]))
        if ref is None:
            continue
        r["epochs_ratio"] = round(r["search_epochs"] / ref["search_epochs"], 4)
        r["time_ratio"] = round(r["search_s"] / ref["search_s"], 4)
        r["total_time_ratio"] = round(r["total_s"] / ref["total_s"], 4)
        r["regret_pp"] = round(100 * (ref["test_acc"] - r["test_acc"]), 3)


def summarize(runs: list[dict[str, Any]], pruners: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for pruner in pruners:
        mine = [r for r in runs if r["pruner"] == pruner and "regret_pp" in r]
        if not mine:
            continue
        regrets = [r["regret_pp"] for r in mine]
        entry = {
            "epochs_ratio": round(statistics.fmean(r["epochs_ratio"] for r in mine), 4),
            "time_ratio": round(statistics.fmean(r["time_ratio"] for r in mine), 4),
            "total_time_ratio": round(statistics.fmean(r["total_time_ratio"] for r in mine), 4),
            "regret_pp": round(statistics.fmean(regrets), 3),
            # standard error of the mean regret: differences below ~2 of these are noise
            "regret_sem_pp": round(statistics.stdev(regrets) / len(regrets) ** 0.5, 3)
            if len(regrets) > 1 else None,
            "worst_regret_pp": max(regrets),
            "test_acc": round(statistics.fmean(r["test_acc"] for r in mine), 4),
            # completed trials per search: near the warm-start count, the search is warm starts only
            "n_complete": round(statistics.fmean(r["n_complete"] for r in mine), 2),
            "n_runs": len(mine),
            "by_dataset": {},
        }
        for name in dict.fromkeys(r["dataset"] for r in mine):
            sub = [r for r in mine if r["dataset"] == name]
            entry["by_dataset"][name] = {
                "epochs_ratio": round(statistics.fmean(r["epochs_ratio"] for r in sub), 4),
                "time_ratio": round(statistics.fmean(r["time_ratio"] for r in sub), 4),
                "regret_pp": round(statistics.fmean(r["regret_pp"] for r in sub), 3),
            }
        summary[pruner] = entry
    return summary


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance targets for the forgetting pruner (None when not measurable)."""
    f, m = summary.get("forgetting"), summary.get("median")
    if f is None:
        return {}
    out: dict[str, Any] = {
        "epochs_ratio_at_most_half": f["epochs_ratio"] <= TARGET_EPOCHS_RATIO,
        "regret_at_most_0.5pp": f["regret_pp"] <= TARGET_REGRET_PP,
    }
    if m is not None:
        no_worse = f["regret_pp"] <= m["regret_pp"] and f["epochs_ratio"] <= m["epochs_ratio"]
        strictly = f["regret_pp"] < m["regret_pp"] or f["epochs_ratio"] < m["epochs_ratio"]
        out["dominates_median"] = no_worse and strictly
    return out


# -- end to end -----------------------------------------------------------------------------------


def end_to_end(folder: Path) -> dict[str, Any]:
    """``samtune search --data builtin:digits`` with defaults vs one training run of its answer."""
    opts = SearchOptions()
    data = load_data("builtin:digits", seed=opts.seed)

    def train_once(config: samtune.SAMConfig, factory: Any, train_config: TrainConfig) -> float:
        t0 = time.monotonic()
        run_config(config, data, train_config, factory, seed=opts.seed)
        return time.monotonic() - t0

    from samtune.search._objective import named_model_factory

    factory = named_model_factory(None, data)
    batch = TrainConfig().resolve_batch_size(len(data.x_train))
    train_config = TrainConfig(epochs=opts.epochs, batch_size=batch, seed=opts.seed)
    sam = samtune.SAMConfig(variant="sam", rho=0.05, base_kwargs={"lr": 0.05, "momentum": 0.9})
    before = train_once(sam, factory, train_config)  # a SAM run before, its answer after
    t0 = time.monotonic()
    rec = samtune.search("builtin:digits", storage=f"sqlite:///{folder / 'e2e'}.db", study="e2e",
                         out=str(folder / "e2e"), progress=False)
    search_s = time.monotonic() - t0
    once = [train_once(rec.config, factory, train_config) for _ in range(2)]
    after_sam = train_once(sam, factory, train_config)
    return {
        "command": "samtune search --data builtin:digits",
        "options": {k: getattr(opts, k) for k in ("trials", "epochs", "pruner", "confirm_seeds",
                                                  "top_k", "space")},
        "batch_size": batch,
        "search_s": round(search_s, 2),
        "recommended": rec.config.describe(),
        "verdict": rec.verdict,
        "train_once_s": round(statistics.fmean(once), 2),
        "search_over_train_once": round(search_s / statistics.fmean(once), 2),
        "sam_reference_s": {"before": round(before, 2), "after": round(after_sam, 2)},
        "compute": rec.compute,
        "epochs_over_one_run": round(rec.compute["epochs"] / opts.epochs, 2),
        "n_complete": rec.study["n_complete"],
        "n_pruned": rec.study["n_pruned"],
    }


# -- output ---------------------------------------------------------------------------------------


def table(summary: dict[str, Any]) -> str:
    lines = ["| pruner | epochs / none | search time / none | mean regret (pp) | SEM (pp) "
             "| worst (pp) | mean test acc | completed trials |", "|---|---|---|---|---|---|---|---|"]
    for pruner, s in summary.items():
        sem = "-" if s["regret_sem_pp"] is None else f"{s['regret_sem_pp']:.2f}"
        lines.append(f"| {pruner} | {s['epochs_ratio']:.3f} | {s['time_ratio']:.3f} | "
                     f"{s['regret_pp']:+.2f} | {sem} | {s['worst_regret_pp']:+.2f} | "
                     f"{s['test_acc']:.4f} | {s['n_complete']:.1f} |")
    return "\n".join(lines)


def dataset_table(summary: dict[str, Any]) -> str:
    names = list(dict.fromkeys(n for s in summary.values() for n in s["by_dataset"]))
    head = "| pruner | " + " | ".join(f"{n}: epochs / regret pp" for n in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for pruner, s in summary.items():
        cells = [f"{s['by_dataset'][n]['epochs_ratio']:.2f} / {s['by_dataset'][n]['regret_pp']:+.2f}"
                 if n in s["by_dataset"] else "-" for n in names]
        lines.append(f"| {pruner} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(result: dict[str, Any], command: str) -> str:
    """The report written next to the JSON: settings, tables, targets and every run."""
    out = ["# Pruning benchmark (generated by benchmarks/pruning.py)", "", "```", command, "```", ""]
    if "summary" in result:
        st = result["settings"]
        out += [f"{result['date']}; {st['trials']} trials x {st['epochs']} epochs, data sets "
                f"{', '.join(st['datasets'])}, seeds {st['seeds']}, confirm_seeds "
                f"{st['confirm_seeds']}, top_k {st['top_k']}, space {st['space']}, one torch "
                f"thread. Ratios and regret against `none` of the same data set and seed "
                f"(regret = 100 x (test acc of none - this pruner's), positive = worse). The "
                f"design history and the reading of these numbers: benchmarks/RESULTS.md.", "",
                table(result["summary"]), "", dataset_table(result["summary"]), "",
                "Targets for `forgetting`: " + ", ".join(
                    f"{k} **{'PASS' if v else 'FAIL'}**" for k, v in result["targets"].items()),
                "", "| data set | seed | pruner | epochs | epochs / none | search s | regret pp "
                "| completed | prune reasons | recommended |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["runs"]:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["prune_reasons"].items())) or "-"
            out.append(f"| {r['dataset']} | {r['seed']} | {r['pruner']} | {r['search_epochs']} | "
                       f"{r.get('epochs_ratio', 1.0):.3f} | {r['search_s']:.1f} | "
                       f"{r.get('regret_pp', 0.0):+.2f} | {r['n_complete']} | {reasons} | "
                       f"{r['config']} |")
        out.append("")
    if "end_to_end" in result:
        e = result["end_to_end"]
        out += [f"End to end, `{e['command']}` with its defaults ({e['options']}): "
                f"{e['search_s']} s for the search, {e['train_once_s']} s for one training run of "
                f"its answer ({e['recommended']}): **{e['search_over_train_once']}x**; "
                f"{e['n_complete']} trials completed, {e['n_pruned']} pruned; "
                f"epochs {e['compute']}.", ""]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=None, help="trials per search (default 20)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 10)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 per data set (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--datasets", default=None,
                   help=f"comma-separated (default {','.join(DATASETS)})")
    p.add_argument("--pruners", default=",".join(PRUNERS), help="comma-separated; none is added")
    p.add_argument("--confirm-seeds", type=int, default=2)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--space", default="default")
    p.add_argument("--end-to-end", choices=("run", "skip", "only"), default=None,
                   help="the end-to-end digits measurement (default run; skip with --quick)")
    p.add_argument("--keep", type=Path, default=None, help="keep the study files in this folder")
    p.add_argument("--quick", action="store_true", help="tiny budget on wine; for smoke tests")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON file, with its .md report beside it (default "
                        "benchmarks/results/pruning.json; --quick: none)")
    args = p.parse_args(argv)
    quick = args.quick
    args.trials = args.trials or (6 if quick else 20)
    args.epochs = args.epochs or (3 if quick else 10)
    args.seeds = args.seeds or (1 if quick else 3)
    args.datasets = (args.datasets or ("wine" if quick else ",".join(DATASETS))).split(",")
    args.pruners = list(dict.fromkeys(["none", *args.pruners.split(",")]))
    if quick:
        args.confirm_seeds = 1
    args.end_to_end = args.end_to_end or ("skip" if quick else "run")
    if args.out is None and not quick:
        args.out = DEFAULT_OUT
    for name in args.pruners:
        if name not in PRUNERS:
            p.error(f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # small models; competing intra-op threads distort the timings
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def say(*parts: Any) -> None:
        print(*parts, file=sys.stderr, flush=True)

    result: dict[str, Any] = {}
    if args.out is not None and args.end_to_end == "only" and args.out.exists():
        result = json.loads(args.out.read_text())  # keep the pruner comparison already there
    with tempfile.TemporaryDirectory(prefix="samtune-pruning-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.end_to_end != "only":
            runs = []
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            for name in args.datasets:
                for i, seed in enumerate(seeds):
                    data = make_dataset(name, seed)
                    k = i % len(args.pruners)  # rotate the order from seed to seed
                    for pruner in args.pruners[k:] + args.pruners[:k]:
                        run = run_search(data, name, seed, pruner, folder, args)
                        runs.append(run)
                        say(f"{name} seed {seed} {pruner:10s} epochs {run['search_epochs']:4d} "
                            f"search {run['search_s']:7.1f}s test_acc {run['test_acc']:.4f} "
                            f"({run['config']})")
            compare(runs)
            summary = summarize(runs, args.pruners)
            result = {
                "benchmark": "pruning",
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "quick": args.quick,
                "settings": {"trials": args.trials, "epochs": args.epochs,
                             "seeds": list(seeds), "datasets": args.datasets,
                             "confirm_seeds": args.confirm_seeds, "top_k": args.top_k,
                             "space": args.space, "torch_threads": 1},
                "machine": {"python": platform.python_version(), "torch": torch.__version__,
                            "optuna": optuna.__version__, "cpus": os.cpu_count(),
                            "samtune": samtune.__version__},
                "runs": runs,
                "summary": summary,
                "targets": targets(summary),
            }
        if args.end_to_end != "skip":
            say("end to end: samtune search --data builtin:digits (defaults)")
            result["end_to_end"] = end_to_end(folder)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        command = " ".join(["python benchmarks/pruning.py", *(sys.argv[1:] if argv is None else argv)])
        args.out.with_suffix(".md").write_text(markdown(result, command))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        if "summary" in result:
            print(table(result["summary"]))
            print()
            print(dataset_table(result["summary"]))
            print("targets:", result["targets"])
        if "end_to_end" in result:
            print("end to end:", json.dumps(result["end_to_end"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
