"""The objective: one trial trains one configuration; the only code that talks to Optuna
from inside the training loop is the small ``OptunaReporter`` callback."""

from __future__ import annotations

import copy
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from torch import nn

from samtune.metrics import Metric
from samtune.optim import SAMConfig
from samtune.search._cost import cost_attrs
from samtune.search._metric import val_scorer
from samtune.search._progress import EpochProgress
from samtune.search._space import SearchSpace
from samtune.search._stages import TRIAL_STAGE, advance, sample_baseline, trial_space
from samtune.search._storage import heartbeat_interval
from samtune.train import Callback, TrainConfig, TrainResult, seed_everything, train

# Signals summarised as plottable scalars per trial (early = at the second epoch, or the first).
SUMMARY_KEYS = ("flip_rate", "loss_gap", "p_drop", "forgetting_rate", "bias_clean", "bias_perturbed")


def trial_seed(seed: int, number: int) -> int:
    return (seed * 1_000_003 + number) % 2**31


class OptunaReporter(Callback):
    """Reports each epoch's ``val_metric`` to the trial and prunes when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, record: dict[str, float]) -> None:
        self.history.append(record)
        self.trial.set_user_attr("history", _jsonable(self.history))
        self.trial.report(record["val_metric"], step=epoch)
        if self.trial.should_prune():
            pruner = getattr(self.trial.study, "pruner", None)
            reason = getattr(pruner, "last_reason", None) or f"pruned at epoch {epoch}"
            self.trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(reason)


def _jsonable(history: list[dict[str, float]]) -> list[dict[str, float | None]]:
    return [{k: (v if math.isfinite(v) else None) if isinstance(v, float) else v
             for k, v in r.items()} for r in history]


def summarize(history: list[dict[str, float]]) -> dict[str, float]:
    """Scalar user attributes the dashboard can plot."""
    if not history:
        return {}
    early = history[min(1, len(history) - 1)]
    out = {"final_val_acc": history[-1]["val_acc"], "final_val_loss": history[-1]["val_loss"],
           "best_val_acc": max(r["val_acc"] for r in history), "epochs_trained": len(history)}
    for key in SUMMARY_KEYS:
        # A perturbation schedule (late, stochastic) leaves some epochs without the
        # perturbed-pass signals: the mean is over the epochs that have them.
        values = [r[key] for r in history if r.get(key) is not None]
        if key in early:
            out[f"early_{key}"] = early[key]
        if values:
            out[f"mean_{key}"] = sum(values) / len(values)
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float) and math.isfinite(v)}


class TrialSurplus(Exception):
    """A trial started after the study already had enough trials (parallel workers raced)."""


@dataclass
class Objective:
    """Train the trial's configuration on the data set; value = the metric's utility on the
    validation split at the last epoch (accuracy unless ``metric`` says otherwise)."""

    data: Any  # samtune.data.Dataset
    space: SearchSpace
    train_config: TrainConfig
    model_factory: Callable[[], nn.Module]  # a fresh model each call (same seed: same weights)
    seed: int = 0
    target: int | None = None  # the study's trial target: later trials are surplus
    say: Callable[[str], None] | None = None  # progress lines for slow epochs (EpochProgress)
    metric: Metric | None = None  # what the trials maximize; None: accuracy

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            _record_heartbeat(trial)  # before the claim: a claimed trial always has a heartbeat
            if self.target is not None and _claims_before(trial) >= self.target:
                trial.set_user_attr("fail_reason", f"surplus: the study already had {self.target} trials")
                raise TrialSurplus(trial.number)
            trial.set_user_attr("worker_host", socket.gethostname())
            trial.set_user_attr("worker_pid", os.getpid())
            return self._run(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); rerun the command to resume")
            raise

    def advance_stage(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback: move the staged search on (``_stages.advance``) after a trial."""
        what = advance(study, self.space, self.target if self.target is not None else 10**9)
        if what and self.say is not None:
            self.say(what)

    def _run(self, trial: optuna.Trial) -> float:
        fixed = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params")
        stage, space = trial_space(trial.study, self.space, fixed)
        trial.set_user_attr(TRIAL_STAGE, stage)
        config = (sample_baseline(trial, space, fixed) if stage == "baseline"
                  else space.sample(trial, fixed))
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("config_text", config.describe())
        callbacks: list[Callback] = [OptunaReporter(trial)]
        if self.say is not None:
            callbacks.append(EpochProgress(self.say, f"trial {trial.number}", self.train_config.epochs))
        result = run_config(
            config, self.data, self.train_config, self.model_factory,
            seed=trial_seed(self.seed, trial.number), callbacks=callbacks,
            val_metric=val_scorer(self.metric),
        )
        trial.set_user_attr("step_time", result.step_time)
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for key, value in cost_attrs(done, config, result, socket.gethostname()).items():
            trial.set_user_attr(key, value)  # cost, perturbed_share: see _cost
        for key, value in summarize(result.history).items():
            trial.set_user_attr(key, value)
        if result.diverged:
            trial.set_user_attr("prune_reason", f"diverged: {result.reason}")
            raise optuna.TrialPruned(f"diverged: {result.reason}")
        return result.val_metric


def _record_heartbeat(trial: optuna.Trial) -> None:
    """Write the trial's first heartbeat now (Optuna's heartbeat thread may not have yet).

    Optuna fails a silent trial as stale only once it has a heartbeat; a worker killed between
    the claim and the thread's first write would otherwise leave the trial running for ever.
    """
    storage = trial.study._storage
    if heartbeat_interval(storage) is not None:
        storage.record_heartbeat(trial._trial_id)


def _claims_before(trial: optuna.Trial) -> int:
    """Trials numbered before this one that are finished or running."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(t.number < trial.number for t in trial.study.get_trials(deepcopy=False, states=states))


def run_config(
    config: SAMConfig, data: Any, train_config: TrainConfig,
    model_factory: Callable[[], nn.Module], *, seed: int,
    callbacks: list[Callback] | None = None,
    val_metric: Callable[[Any, Any], float] | None = None,
) -> TrainResult:
    """Train ``config`` from a fresh model with ``seed`` (search trials and confirmation runs);
    ``val_metric``: see ``train``."""
    seed_everything(seed)
    model = model_factory()
    cfg = TrainConfig(**{**train_config.to_dict(), "seed": seed})
    return train(model, data, config, cfg, callbacks, val_metric=val_metric)


def model_factory_from(model: nn.Module) -> Callable[[], nn.Module]:
    """Each call returns a copy of ``model`` with its initial weights."""
    state = copy.deepcopy(model.state_dict())

    def make() -> nn.Module:
        fresh = copy.deepcopy(model)
        fresh.load_state_dict(state)
        return fresh

    return make


def named_model_factory(name: str | None, data: Any) -> Callable[[], nn.Module]:
    from samtune.models import build_model

    build_model(name, data.input_shape, data.num_classes)  # fail early on a bad name
    return lambda: build_model(name, data.input_shape, data.num_classes)


