"""The bank on disk: one append-only ``benchmarks/bank/data/<task>.jsonl.gz`` per task.

Each line is a JSON object; gzip members are appended as runs finish, so an interrupted build
keeps what it did and resumes from it. Three kinds of line:

- ``{"type": "task", ...}``: the task's name, classes, split sizes, epochs, batch size and its
  clean test labels (``y_test``, base64 of uint8; written once, first);
- ``{"type": "run", "key", "cell", "seed", "history", "pred", ...}``: one cell trained with one
  seed at the full budget: ``history`` maps every metric samtune records per epoch (val/train
  accuracy and loss, flip rate, loss gap, p-drop, output bias at w and w+e, example forgetting
  rate, lr, rho, step and epoch time) to its list over epochs; ``pred`` holds the predicted
  class of every test example (base64 of uint8), so any metric and any paired statistic can be
  computed from the bank; ``test_acc`` is their accuracy on the clean test labels;
- ``{"type": "cost", "key", "ratio", ...}``: the median step time of a (variant, m, schedule)
  over the baseline's, measured side by side (interleaved rounds) in one process.

Reading takes well under a second per task.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"


def encode_u8(a: np.ndarray) -> str:
    return base64.b64encode(np.asarray(a, dtype=np.uint8).tobytes()).decode()


def decode_u8(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.uint8)


class Store:
    """The runs, costs and header of one task, read from (and appended to) its file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.header: dict[str, Any] = {}
        self.runs: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        self.costs: dict[str, dict[str, Any]] = {}
        self._y: np.ndarray | None = None
        self._correct: dict[tuple[str, int], np.ndarray] = {}
        if path is not None and path.exists():
            with gzip.open(path, "rt") as fh:
                for line in fh:
                    if line.strip():
                        self._add(json.loads(line))

    # -- writing --------------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Add ``record`` and append it to the file (a gzip member of its own)."""
        self._add(record)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(self.path, "at") as fh:
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")

    def _add(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        if kind == "task":
            self.header = record
            self._y = None
        elif kind == "run":
            self.runs[record["key"]][int(record["seed"])] = record
            self._correct.pop((record["key"], int(record["seed"])), None)
        elif kind == "cost":
            self.costs[record["key"]] = record
        else:
            raise ValueError(f"unknown bank record type {kind!r}")

    # -- reading --------------------------------------------------------------------------------

    @property
    def y_test(self) -> np.ndarray:
        if self._y is None:
            self._y = decode_u8(self.header["y_test"]).astype(np.int64)
        return self._y

    def has(self, key: str, seed: int) -> bool:
        return seed in self.runs.get(key, {})

    def seeds(self, key: str) -> list[int]:
        return sorted(self.runs.get(key, {}))

    def keys(self) -> list[str]:
        return sorted(self.runs)

    def has_cost(self, key: str) -> bool:
        return key in self.costs

    def cost(self, key: str) -> float:
        return float(self.costs[key]["ratio"]) if key in self.costs else math.inf

    def predictions(self, key: str, seed: int) -> np.ndarray | None:
        """Predicted test classes of one run (None when it diverged)."""
        run = self.runs[key][seed]
        return None if run.get("pred") is None else decode_u8(run["pred"]).astype(np.int64)

    def correct(self, key: str, seed: int) -> np.ndarray:
        """Per test example: 1.0 when the run classified it right (all 0 for a diverged run)."""
        hit = self._correct.get((key, seed))
        if hit is None:
            pred = self.predictions(key, seed)
            hit = (np.zeros(len(self.y_test)) if pred is None
                   else (pred == self.y_test).astype(np.float64))
            self._correct[(key, seed)] = hit
        return hit

    def accs(self, key: str, seeds: range | list[int] | None = None) -> list[float]:
        """Test accuracy per stored seed (of ``seeds`` when given; diverged runs count as 0)."""
        have = self.runs.get(key, {})
        chosen = have if seeds is None else [s for s in seeds if s in have]
        return [float(self.correct(key, s).mean()) for s in sorted(chosen)]

    def mean_acc(self, key: str, seeds: range | list[int] | None = None) -> float:
        accs = self.accs(key, seeds)
        return float(np.mean(accs)) if accs else -math.inf

    def history(self, key: str, seed: int) -> dict[str, list[float | None]]:
        return self.runs[key][seed]["history"]


def compact(path: Path) -> None:
    """Rewrite an appended file as one gzip stream, latest record per run/cost kept (appended
    members compress poorly, each with its own dictionary)."""
    write(Store(path), path)


def write(store: Store, path: Path) -> None:
    """Write ``store`` to ``path`` as one gzip stream. Atomic: a temporary file replaces the
    old one."""
    records = [store.header] + [r for key in store.keys() for _, r in sorted(store.runs[key].items())]
    records += [store.costs[k] for k in sorted(store.costs)]
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=9) as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    tmp.replace(path)


def task_path(name: str, data_dir: Path = DATA_DIR) -> Path:
    return data_dir / f"{name}.jsonl.gz"


def open_store(name: str, data_dir: Path = DATA_DIR) -> Store:
    return Store(task_path(name, data_dir))
