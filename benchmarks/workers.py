"""Trials per hour with 1 and 2 worker processes, on SQLite and on PostgreSQL.

    python benchmarks/workers.py [--rounds 2] [--trials 8] [--epochs 4] [--json]

Every trial trains the same configuration (SAM, rho 0.05, whole batch, fixed lr) on
builtin:digits, so trials cost the same and only the parallelism differs. Throughput is
trials / (last trial completed - first trial started), read from the study. Configurations run
interleaved, round-robin, in one run; ratios are of medians from the same run. PostgreSQL runs
on a throwaway server on loopback (tests/pg_server.py installs it when missing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACE = {"variants": ["sam"], "lr": 0.05, "m": [None], "schedule": ["constant"],
         "rho": {"default": {"low": 0.05, "high": 0.05}}, "warm_start": []}


def one_run(storage: str, study: str, workers: int, trials: int, epochs: int, space: Path,
            out: Path) -> float:
    """Trials per hour of one search's trial phase."""
    cmd = [sys.executable, "-m", "samtune.cli", "search", "--data", "builtin:digits",
           "--trials", str(trials), "--epochs", str(epochs), "--workers", str(workers),
           "--pruner", "none", "--space", str(space), "--confirm-seeds", "1", "--top-k", "1",
           "--study", study, "--storage", storage, "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, cwd=out.parent, capture_output=True)
    done = optuna.load_study(study_name=study, storage=storage).get_trials(states=(TrialState.COMPLETE,))
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    return len(done) / ((end - start).total_seconds() / 3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="samtune-workers-"))
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    from contextlib import ExitStack

    from tests.pg_server import postgres_server

    with ExitStack() as stack:
        storages = {"sqlite": None}
        if not args.no_postgres:
            storages["postgresql"] = stack.enter_context(postgres_server())
        rates: dict[str, list[float]] = {}
        n = 0
        for r in range(args.rounds):
            for kind, url in storages.items():
                for workers in (1, 2):
                    n += 1
                    storage = url or f"sqlite:///{tmp / f'run{n}.db'}"
                    rate = one_run(storage, f"run{n}", workers, args.trials, args.epochs, space,
                                   tmp / f"out{n}")
                    rates.setdefault(f"{kind}/{workers}", []).append(rate)
                    print(f"round {r + 1} {kind} workers={workers}: {rate:.0f} trials/hour",
                          file=sys.stderr)
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "trials_per_hour": med,
        "two_over_one": {kind: med[f"{kind}/2"] / med[f"{kind}/1"] for kind in storages},
        "postgres_over_sqlite": ({w: med[f"postgresql/{w}"] / med[f"sqlite/{w}"] for w in (1, 2)}
                                 if "postgresql" in storages else None),
        "settings": {"rounds": args.rounds, "trials": args.trials, "epochs": args.epochs},
    }
    out = ROOT / "benchmarks" / "results" / "workers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in med.items():
            print(f"{k:<14} {v:8.0f} trials/hour")
        for kind, ratio in result["two_over_one"].items():
            print(f"{kind}: 2 workers / 1 worker = {ratio:.2f}x")


if __name__ == "__main__":
    main()
