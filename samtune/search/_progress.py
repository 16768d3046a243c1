"""Live progress of a search on stderr: one line per finished trial and confirmation run."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from samtune.train import Callback

SLOW_EPOCH_S = 10.0  # epochs at least this long get a progress line of their own


REASON_WIDTH = 90  # a prune or fail reason longer than this is clipped on the progress line


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters at a word boundary, marked with an ellipsis.

    >>> clip("unlikely to be confirmed: P(final val_acc >= 0.981) = 0.25 < 0.5", 40)
    'unlikely to be confirmed: P(final…'
    """
    if len(text) <= width:
        return text
    head = text[: width - 1]
    cut = head.rfind(" ")
    return (head[:cut] if cut > 0 else head).rstrip(" ,;:(") + "…"


def is_surplus(trial: FrozenTrial) -> bool:
    """Whether the objective refused ``trial`` as surplus (the study already had its trials):
    nothing ran, so it is neither shown nor counted."""
    return trial.state == TrialState.FAIL and "surplus" in trial.user_attrs.get("fail_reason", "")


def fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """An Optuna callback printing trial n/N, best so far, pruned so far, elapsed and left."""

    def __init__(self, target: int, enabled: bool = True, stream: TextIO | None = None,
                 prefix: str = "", value_name: str = "val_acc") -> None:
        self.target, self.enabled, self.prefix = target, enabled, prefix
        self.value_name = value_name  # what a trial's value is (``_metric.value_name``)
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.ran = 0

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.ran += 1
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        n = len(trials)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        elapsed = time.monotonic() - self.start
        left = elapsed / self.ran * max(0, self.target - n)
        try:
            best = f"best {study.best_value:.4f}"
        except ValueError:
            best = "best -"
        if is_surplus(trial):
            return  # a race lost to another worker: nothing ran
        if trial.state == TrialState.COMPLETE:
            what = f"{self.value_name} {trial.value:.4f}"
        else:
            reason = trial.user_attrs.get("prune_reason") or trial.user_attrs.get("fail_reason", "")
            what = clip(f"{trial.state.name.lower()}: {reason}", REASON_WIDTH)
        config = trial.user_attrs.get("config_text", "")
        self.say(f"{self.prefix}[{n:>3}/{self.target}] trial {trial.number:>3} {config:<48} {what} | {best} | "
                 f"pruned {pruned} | {fmt_time(elapsed)} elapsed, ~{fmt_time(left)} left")


class EpochProgress(Callback):
    """A progress line per epoch, for runs whose epochs are slow enough to leave the user
    waiting (at least ``SLOW_EPOCH_S``); fast runs stay at one line per trial."""

    def __init__(self, say: Callable[[str], None], what: str, epochs: int) -> None:
        self.say, self.what, self.epochs = say, what, epochs
        self.last = time.monotonic()

    def on_train_begin(self, info: dict) -> None:
        self.last = time.monotonic()

    def on_epoch_end(self, epoch: int, record: dict[str, float]) -> None:
        now = time.monotonic()
        took, self.last = now - self.last, now
        if took >= SLOW_EPOCH_S:
            left = fmt_time(took * (self.epochs - epoch))
            self.say(f"  {self.what} epoch {epoch}/{self.epochs}: val_acc {record['val_acc']:.4f} "
                     f"({fmt_time(took)} per epoch, ~{left} left in this run)")
