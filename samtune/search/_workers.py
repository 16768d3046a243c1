"""Trials in one or several processes against one study, the Optuna way.

The study is created once (``samtune search``), with everything a worker needs stored in its
``samtune_run`` user attribute (a :class:`RunRecord`): the data spec, the space, the budget,
the target trial count.
A worker (``samtune worker``, or a process started by ``samtune search --workers N``) rebuilds
the objective from that, checks the data fingerprint, and runs trials until the study holds the
target number of finished (complete or pruned) trials. Running trials send heartbeats: a trial
whose worker was killed is failed as stale and enqueued again.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from samtune.errors import SamtuneError
from samtune.metrics import Metric, parse_metric
from samtune.search._metric import (
    metric_from_run,
    metric_key,
    metric_settings,
    metric_shown,
    value_name,
)
from samtune.search._objective import Objective, TrialSurplus, named_model_factory
from samtune.search._options import HEARTBEAT_S
from samtune.search._progress import Progress, is_surplus
from samtune.search._pruners import make_pruner
from samtune.search._space import SearchSpace
from samtune.search._storage import STALE_BEATS, heartbeat_interval, load_study, open_storage
from samtune.train import TrainConfig

RUN_ATTR = "samtune_run"  # study user attribute: how to run this study's trials
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SMALL_MODEL_PARAMS = 2_000_000  # below this, train on one CPU thread (see cpu_threads)


@dataclass
class RunRecord:
    """How to run a study's trials: written by ``samtune search``, read by every worker.

    Stored as a plain dict in the study's ``samtune_run`` user attribute; ``from_dict`` reads
    records written by older versions (missing keys take these defaults, unknown keys are
    ignored).
    """

    data: str | None  # the --data spec; None: data given from Python (workers cannot join)
    fingerprint: str  # of the data the study was made on; a worker's data must match
    space: dict[str, Any]  # SearchSpace.to_dict(), batch size and fixed lr applied
    epochs: int  # per trial
    batch_size: int
    trials: int  # finished trials the study should reach
    seed: int = 0  # data split and trial seeds
    target: str | None = None  # CSV target column
    drop: list[str] = field(default_factory=list)  # CSV columns left out by --drop
    model: str | None = None  # a named model; None: a module given from Python
    pruner: str = "forgetting"
    device: str | None = None
    threads: int | None = None
    timeout: float | None = None  # seconds for the trial phase (--timeout)
    top_k: int = 2  # configurations confirmed besides the baseline (the pruner's bar)
    end_time: float | None = None  # --time-budget: when the whole run ends (time.time())
    confirm_runs: int = 0  # runs the confirmation needs at least (one seed per candidate)
    val_size: int | None = None  # validation examples (the forgetting pruner's noise margin)
    metric: str = "accuracy"  # --metric: a name, or "cost:" and the cost file's absolute path
    cost_matrix: list[list[float]] | None = None  # a cost metric's K x K costs (workers need no file)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def cpu_threads(model: nn.Module, requested: int | None) -> int:
    """Small models gain nothing from intra-op threads and lose a lot when threads compete
    with other processes, so they train on one thread; larger ones keep torch's default."""
    if requested is not None:
        return requested
    n_params = sum(p.numel() for p in model.parameters())
    return 1 if n_params < SMALL_MODEL_PARAMS else torch.get_num_threads()


def run_seconds(study: optuna.Study) -> float | None:
    """Seconds one full run takes here: the median completed trial (the longest finished
    trial while none completed); None before any trial finished."""
    def took(states: tuple[TrialState, ...]) -> list[float]:
        return [(t.datetime_complete - t.datetime_start).total_seconds()
                for t in study.get_trials(deepcopy=False, states=states)
                if t.datetime_start is not None and t.datetime_complete is not None]

    complete = took((TrialState.COMPLETE,))
    if complete:
        return statistics.median(complete)
    finished = took(FINISHED)
    return max(finished) if finished else None


class StopForBudget:
    """Stop ``optimize`` when one more trial and the smallest confirmation would not fit
    before ``end_time`` (``time.time()``): the whole-run budget of ``--time-budget``."""

    def __init__(self, end_time: float, confirm_runs: int) -> None:
        self.end_time, self.confirm_runs = end_time, confirm_runs

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        run = run_seconds(study)
        if run is not None and time.time() + run * (1 + self.confirm_runs) > self.end_time:
            study.stop()


def make_sampler(seed: int | None) -> optuna.samplers.TPESampler:
    """Seeded TPE over the conditional space; constant_liar keeps parallel workers apart."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                      n_startup_trials=8, constant_liar=True)


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class StopAtTarget:
    """Stop ``optimize`` once the study holds ``target`` finished trials (any worker's)."""

    def __init__(self, target: int) -> None:
        self.target = target

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if finished(study) >= self.target:
            study.stop()


def run_trials(study: optuna.Study, objective: Objective, *, quota: int | None, target: int,
               timeout: float | None, callbacks: list[Callable[..., None]]) -> None:
    """Run at most ``quota`` trials here, stopping at the study's ``target``.

    A trial can be finished elsewhere while this process still runs it: failed as stale by
    another process when this one missed its heartbeats (a long stall), or, on storages that
    let two processes pop the same enqueued trial, recorded by the other one (samtune's SQLite
    storage prevents that: ``_storage._immediate_transactions``). Optuna then refuses this
    process's result ("Cannot tell a FAIL trial", or ``UpdateFinishedTrialError``); the stored
    outcome stands, and this process says so and goes on with its quota (that trial does not
    count).
    """
    ran = 0
    surplus = False

    def count(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran, surplus
        if is_surplus(trial):  # the rest is running elsewhere: stop asking for trials
            surplus = True
            study.stop()
        else:
            ran += 1

    stages = [objective.advance_stage] if hasattr(objective, "advance_stage") else []
    deadline = None if timeout is None else time.monotonic() + timeout
    while finished(study) < target and (quota is None or ran < quota):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        if surplus:
            surplus = False
            if not wait_for_running(study, deadline):
                return
            continue
        try:
            study.optimize(objective, n_trials=None if quota is None else quota - ran,
                           timeout=left, gc_after_trial=False, catch=(TrialSurplus,),
                           callbacks=[StopAtTarget(target), count, *callbacks, *stages])
            if not surplus:
                return
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as exc:
            if not _taken_by_another(exc):
                raise
            print(f"samtune: process {os.getpid()}: a trial it was running was finished elsewhere "
                  f"(failed as stale, or run by another worker: {exc}); the stored outcome stands",
                  file=sys.stderr)


def wait_for_running(study: optuna.Study, deadline: float | None) -> bool:
    """Wait while other processes' trials run (failing stale and orphaned ones as they appear).

    Returns True once no trial is running (the study may need more trials), False at the
    deadline or when the storage has no heartbeats (a dead process's trial would never end).
    """
    beat = heartbeat_interval(study._storage)
    if beat is None:
        return False
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(beat)
        fail_dead(study, beat)
    return True


def fail_dead(study: optuna.Study, heartbeat: int, dead_pids: Collection[int] = ()) -> None:
    """Fail and retry the running trials no process runs: stale ones and orphans."""
    optuna.storages.fail_stale_trials(study)
    fail_orphans(study, grace=STALE_BEATS * heartbeat, dead_pids=dead_pids)


def fail_orphans(study: optuna.Study, *, grace: float, dead_pids: Collection[int] = ()) -> list[int]:
    """Fail running trials that no process runs, and retry them as stale trials are retried.

    Optuna fails a trial as stale only once it has a heartbeat. The objective writes the first
    one before it claims the trial (``worker_host``, ``worker_pid``), but a process can die
    before that. Orphans: trials claimed by a worker of this host known to have died, and trials
    still unclaimed ``grace`` seconds after they started. Returns their numbers.
    """
    storage = study._storage
    now, host = dt.datetime.now(), socket.gethostname()
    orphans = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("worker_pid")
        dead = pid in dead_pids and t.user_attrs.get("worker_host") == host
        unclaimed = pid is None and t.datetime_start is not None \
            and (now - t.datetime_start).total_seconds() > grace
        if dead or unclaimed:
            try:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", "its process died")
                if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    orphans.append(t)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it ended meanwhile
    retry = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    for t in orphans:
        if retry is not None:  # the retry inherits the user attributes, not the failure's
            failed = copy.deepcopy(storage.get_trial(t._trial_id))
            for key in ("fail_reason", "worker_pid", "worker_host"):
                failed.user_attrs.pop(key, None)
            retry(study, failed)
    return [t.number for t in orphans]


def _taken_by_another(exc: Exception) -> bool:
    """Whether ``exc`` is Optuna refusing to record a trial that is already finished."""
    if isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
        return True
    return any(str(exc) == f"Cannot tell a {state.name} trial." for state in FINISHED + (TrialState.FAIL,))


def worker_study(name: str, url: str, *, seed: int | None, heartbeat: int = HEARTBEAT_S,
                 ) -> tuple[optuna.Study, RunRecord]:
    storage = open_storage(url, create=False, heartbeat=heartbeat)
    stored = load_study(name, storage).user_attrs.get(RUN_ATTR)
    if stored is None:
        raise SamtuneError(f"study {name!r} was not made by 'samtune search'; start it with samtune search first.")
    run = RunRecord.from_dict(stored)
    pruner = make_pruner(run.pruner, epochs=run.epochs, top_k=run.top_k, val_size=run.val_size,
                         value_name=value_name(run.metric))
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(seed), pruner=pruner)
    return study, run


def worker_objective(study: optuna.Study, run: RunRecord, metric: str | None = None) -> Objective:
    """Rebuild the objective from the study's stored run settings (data checked by fingerprint).

    ``metric``: a ``--metric`` the worker was given; refused unless it is the study's."""
    from samtune.data import load_data

    if run.data is None or run.model is None:
        raise SamtuneError(
            f"study {study.study_name!r} searches data or a model given from Python; "
            "workers can only join studies of a --data path and a named --model.")
    dataset = load_data(run.data, target=run.target, drop=run.drop, seed=run.seed)
    if dataset.fingerprint != run.fingerprint:
        raise SamtuneError(
            f"the data at {run.data!r} differs from the data study {study.study_name!r} was made "
            "on (fingerprint); give this worker the same files.")
    stored = metric_from_run(run.metric, run.cost_matrix, dataset.num_classes)
    if metric is not None:
        check_metric(study.study_name, stored, parse_metric(metric, dataset.classes))
    space = SearchSpace.from_dict(run.space, where=f"study {study.study_name!r}")
    train_config = TrainConfig(epochs=run.epochs, batch_size=run.batch_size, seed=run.seed,
                               device=run.device)
    factory = named_model_factory(run.model, dataset)
    return Objective(dataset, space, train_config, factory, seed=run.seed, target=run.trials,
                     metric=stored)


def check_metric(study: str, stored: Metric, given: Metric) -> None:
    """Refuse a worker's ``--metric`` that is not the one the study searches."""
    old, new = metric_settings(stored), metric_settings(given)
    if metric_key(old) != metric_key(new):
        raise SamtuneError(
            f"study {study!r} searches --metric {metric_shown(old)}, not {metric_shown(new)}; "
            "leave --metric out (a worker takes the study's) or pass the study's.")


def trial_phase(run: RunRecord) -> tuple[float | None, list[Callable[..., None]]]:
    """The trial phase's timeout (``--timeout``, cut to ``--time-budget``) and the callback
    that stops it early enough for the confirmation."""
    timeout = run.timeout
    if run.end_time is None:
        return timeout, []
    left = run.end_time - time.time()
    return (left if timeout is None else min(timeout, left)), [StopForBudget(run.end_time, run.confirm_runs)]


def join(name: str, url: str, *, quota: int | None = None, seed: int | None = None,
         heartbeat: int = HEARTBEAT_S, threads: int | None = None, progress: bool = True,
         metric: str | None = None) -> int:
    """``samtune worker``: run trials of an existing study until it reaches its target.

    The worker searches the study's metric; ``metric``, when given, must be that one.
    Returns the number of trials this worker ran.
    """
    study, run = worker_study(name, url, seed=seed, heartbeat=heartbeat)
    objective = worker_objective(study, run, metric)
    torch.set_num_threads(cpu_threads(objective.model_factory(), threads or run.threads))
    report = Progress(run.trials, enabled=progress, prefix=f"worker {os.getpid()} ",
                      value_name=value_name(run.metric))
    objective.say = lambda text: report.say(report.prefix + text.lstrip())
    timeout, budget = trial_phase(run)
    if timeout is None or timeout > 0:
        run_trials(study, objective, quota=quota, target=run.trials, timeout=timeout,
                   callbacks=[report, *budget])
    return report.ran


def spawn(name: str, url: str, quotas: list[int], *, seed: int, heartbeat: int,
          threads: int | None, progress: bool, say: Callable[[str], None]) -> dict[int, int]:
    """Start one ``samtune worker`` process per quota and wait for them; returns pid: exit code.

    Ctrl-C is forwarded to the workers, which mark their running trials and exit.
    """
    procs = []
    for i, quota in enumerate(quotas):
        cmd = [sys.executable, "-m", "samtune.cli", "worker", "--study", name, "--storage", url,
               "--quota", str(quota), "--seed", str(seed + 7919 * (i + 1)), "--heartbeat", str(heartbeat)]
        if threads:
            cmd += ["--threads", str(threads)]
        if not progress:
            cmd.append("--quiet")
        procs.append(subprocess.Popen(cmd))
    say(f"started {len(procs)} worker process(es): {', '.join(str(p.pid) for p in procs)}")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    for p, code in zip(procs, codes):  # printed even with --quiet: something went wrong
        if code < 0:
            print(f"warning: worker {p.pid} was killed by signal {-code}; its running trial will "
                  "be failed as stale and retried", file=sys.stderr, flush=True)
        elif code != 0:
            print(f"warning: worker {p.pid} exited with status {code}", file=sys.stderr, flush=True)
    return {p.pid: code for p, code in zip(procs, codes)}


def reap_stale(study: optuna.Study, heartbeat: int, dead_pids: Collection[int]) -> None:
    """After workers died: fail and re-enqueue their trials (stale ones after the grace period)."""
    fail_dead(study, heartbeat, dead_pids)  # dead workers' trials need no grace period
    if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        time.sleep(STALE_BEATS * heartbeat + 1)
        fail_dead(study, heartbeat, dead_pids)
