"""``SearchOptions``: every option of a search, its default and its help, in one place.

``samtune search``'s flags are made from these fields (``--batch-size`` for ``batch_size``), so
the CLI and the Python call take the same names with the same defaults. This module imports
nothing heavy: ``samtune --help`` reads it without loading torch or Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from samtune.errors import ConfigError

PRUNERS = ("forgetting", "median", "hyperband", "none")
HEARTBEAT_S = 10  # a running trial's heartbeat (seconds)
PRESETS_DIR = Path(__file__).parents[1] / "presets"  # in the repository: a link to studies/


def list_presets() -> list[str]:
    """Names of the shipped presets (``default``, ``quick``, ``paper``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _opt(default: Any, help: str, *, low: int | None = None, metavar: str | None = None,
         choices: tuple[str, ...] | None = None, cli: bool = True) -> Any:
    """A field with its CLI help; ``low``: the smallest whole number accepted."""
    return field(default=default, metadata={"help": help, "low": low, "metavar": metavar,
                                            "choices": choices, "cli": cli})


def split_columns(text: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """``"a,b"`` -> ``("a", "b")``; a sequence is kept; None is empty."""
    if text is None:
        return ()
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(p.strip() for p in parts if str(p).strip())


@dataclass
class SearchOptions:
    """Everything ``samtune search`` takes; the CLI's options are made from these fields."""

    trials: int = _opt(24, "finished (complete or pruned) trials to reach; a resumed study is "
                       "topped up", low=1, metavar="N")
    timeout: float | None = _opt(None, "stop starting trials after this many seconds (the "
                                 "confirmation still runs; see --time-budget)", metavar="S")
    time_budget: float | None = _opt(None, "seconds for the whole run, trials and confirmation: "
                                     "trials stop early enough for the confirmation to fit, and "
                                     "the confirmation uses fewer seeds when it would not",
                                     metavar="S")
    epochs: int = _opt(12, "epochs per trial and per confirmation run", low=1, metavar="N")
    batch_size: int | None = _opt(None, "batch size (default: from the training-set size, 16 "
                                  "to 128)", low=1, metavar="N")
    study: str | None = _opt(None, "study name (default: named after the data, and --model "
                             "when given)", metavar="NAME")
    storage: str | None = _opt(None, "Optuna RDB URL (default: sqlite:///studies/STUDY.db)",
                               metavar="URL")
    pruner: str = _opt("forgetting", "trial pruner", choices=PRUNERS)
    space: str = _opt("default", "search-space preset ({presets}) or a YAML file",
                      metavar="FILE|PRESET")
    lr: float | None = _opt(None, "fix the base learning rate instead of searching it", metavar="X")
    model: str | None = _opt(None, "mlp, cnn, resnet18 or package.module:function, a function "
                             "called as function(input_shape, num_classes) that returns an "
                             "nn.Module (default: by data kind)", metavar="NAME")
    target: str | None = _opt(None, "CSV target column (default: label/target/class/y)",
                              metavar="COL")
    drop: tuple[str, ...] = _opt((), "CSV columns to leave out, comma-separated (ID-like "
                                 "columns are left out without it, with a warning)",
                                 metavar="COL[,COL]")
    seed: int = _opt(0, "seed of splits, sampler and trials", metavar="N")
    out: str | None = _opt(None, "folder for recommendation.json/.yaml (default: beside the "
                           "study)", metavar="DIR")
    confirm_seeds: int = _opt(3, "seeds per confirmed configuration (the first round)", low=1,
                              metavar="K")
    max_confirm_seeds: int | None = _opt(None, "seeds the baseline and the judged SAM-family "
                                         "configuration may reach while the verdict is open, one "
                                         "more at a time; 'inconclusive' when they run out "
                                         "(default: twice --confirm-seeds)", low=1, metavar="K")
    metric: str = _opt("accuracy", "what the trials maximize on the validation split and the "
                        "verdict judges on the test split: accuracy, balanced_accuracy, macro_f1, "
                        "worst_class_recall, or cost:FILE.csv (a K x K CSV of non-negative "
                        "misclassification costs, row true class, column predicted class, "
                        "optionally labelled with the class names; the mean cost is minimized)",
                        metavar="NAME|cost:FILE.csv")
    top_k: int = _opt(2, "distinct best configurations to confirm, besides the baseline", low=1, metavar="K")
    max_cost: float | None = _opt(None, "recommend only a configuration at most X times the "
                                  "baseline's training cost (step time, measured side by side "
                                  "in the confirmation); trials above it are not confirmed, and "
                                  "the summary says when a better configuration was left out "
                                  "(X >= 1; default: no limit)", metavar="X")
    device: str | None = _opt(None, "torch device (default: cuda when present, else cpu)", metavar="DEV")
    threads: int | None = _opt(None, "torch CPU threads (default: 1 for models under 2M "
                               "parameters, else torch's default)", low=1, metavar="N")
    workers: int = _opt(1, "worker processes running trials on this machine", low=1, metavar="N")
    heartbeat: int = _opt(HEARTBEAT_S, "seconds between heartbeats of a running trial; after 3 "
                          "missed beats it is failed and retried", low=1, metavar="S")
    progress: bool = _opt(True, "print progress to stderr (the CLI's --quiet turns it off)",
                          cli=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            low, value = f.metadata["low"], getattr(self, f.name)
            if low is None or (value is None and f.default is None):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{flag(f.name)} must be a whole number >= {low}, but got {value!r}.")
        for name in ("timeout", "time_budget"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not value > 0):
                raise ConfigError(f"{flag(name)} must be a positive number of seconds, but got {value!r}.")
        if self.max_cost is not None and (isinstance(self.max_cost, bool)
                                          or not isinstance(self.max_cost, int | float)
                                          or not self.max_cost >= 1):
            raise ConfigError(f"--max-cost must be a number >= 1 (a multiple of the baseline's "
                              f"cost, which is 1), but got {self.max_cost!r}; pass 1.5 for at "
                              "most one and a half times the baseline's step time.")
        if self.lr is not None and not 0 < self.lr <= 10:
            raise ConfigError(f"--lr must be in (0, 10], but got {self.lr!r}.")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}; choose one of: {', '.join(PRUNERS)}.")
        self.drop = split_columns(self.drop)
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise ConfigError(f"--metric must be a metric name or cost:FILE.csv, but got {self.metric!r}.")
        if not self.metric.strip().startswith("cost:"):  # a cost file is read with the data's classes
            from samtune.metrics import parse_metric

            parse_metric(self.metric, ["class"])  # an unknown name fails here, before any data loads


def flag(name: str) -> str:
    """The CLI flag of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")
