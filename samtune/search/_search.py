"""``search``: the product's main job, from data to a recommended configuration."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState
from torch import nn

import samtune
from samtune.data import Dataset, load_data
from samtune.errors import ConfigError, SamtuneError
from samtune.metrics import Metric, parse_metric
from samtune.models.check import check_model, refuse_lazy
from samtune.search._confirm import Runner, choose_baseline, confirm, pick_candidates, settle
from samtune.search._cost import admissible
from samtune.search._metric import (
    is_accuracy,
    metric_key,
    metric_label,
    metric_settings,
    metric_shown,
    value_name,
)
from samtune.search._objective import Objective, model_factory_from, named_model_factory
from samtune.search._options import SearchOptions
from samtune.search._progress import Progress, fmt_time
from samtune.search._pruners import make_pruner
from samtune.search._recommendation import Recommendation, build_recommendation
from samtune.search._space import SearchSpace
from samtune.search._stages import enqueue_stage
from samtune.search._storage import (
    default_storage_url,
    default_study_name,
    load_study,
    mask_url,
    open_storage,
    sqlite_path,
)
from samtune.search._workers import (
    RUN_ATTR,
    RunRecord,
    cpu_threads,
    make_sampler,
    reap_stale,
    run_seconds,
    run_trials,
    spawn,
    trial_phase,
)
from samtune.train import TrainConfig

__all__ = ["SearchOptions", "cpu_threads", "search", "stored_recommendation"]

SEARCH_PLAN = "staged-1"  # baseline lr first, then the SAM family around it (see _stages)
SETTINGS_ATTR = "samtune"  # study user attribute holding what the study was made with
RESOLVE_GAIN = 0.03  # warn when the test split cannot show a gain this large (3 pp)
HASHED = ("fingerprint", "space")  # settings shown shortened in the refusal message


def _settings(data: Any, space: SearchSpace, train: TrainConfig, model: str,
              metric: Metric) -> dict[str, Any]:
    return {"fingerprint": data.fingerprint, "space": space.digest(), "space_name": space.name,
            "epochs": train.epochs, "batch_size": train.batch_size, "model": model,
            "dataset": data.describe(), "samtune_version": samtune.__version__,
            "search": SEARCH_PLAN, **metric_settings(metric)}


def differences(stored: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """What differs between a study's stored settings and a request's, one phrase each (a
    study stored without a metric was searched on accuracy; see ``_metric``)."""
    labels = {"fingerprint": "data (fingerprint)", "space": "search space", "epochs": "--epochs",
              "batch_size": "batch size", "model": "model", "search": "search plan"}
    out = []
    for key, label in labels.items():
        old, new = stored.get(key), settings[key]
        if old != new:
            if key in HASHED:
                old, new = f"{old!s:.12}", f"{new!s:.12}"
            out.append(f"{label} {old} vs {new}")
    if metric_key(stored) != metric_key(settings):
        out.append(f"--metric {metric_shown(stored)} vs {metric_shown(settings)}")
    return out


def _check_same(study: optuna.Study, settings: dict[str, Any]) -> None:
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        if study.trials:
            raise SamtuneError(f"study {study.study_name!r} was not made by samtune; choose another --study name.")
        return
    differ = differences(stored, settings)
    if differ:
        raise SamtuneError(
            f"study {study.study_name!r} was made with a different {'; '.join(differ)}; use a new "
            "--study name or the original settings."
        )


def open_search_study(
    name: str, storage_url: str, settings: dict[str, Any], space: SearchSpace,
    pruner: optuna.pruners.BasePruner, seed: int, heartbeat: int, target: int,
) -> optuna.Study:
    """Create the study once (or load it), refuse a mismatch, enqueue what its stage misses
    (the baseline grid first; see ``_stages``)."""
    storage = open_storage(storage_url, heartbeat=heartbeat)
    sampler = make_sampler(seed)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if name in names:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise SamtuneError(f"study {name!r} is not a samtune study (it minimizes); choose another --study name.")
        _check_same(study, settings)
    else:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    pruner=pruner, direction="maximize")
    if SETTINGS_ATTR not in study.user_attrs:
        study.set_user_attr(SETTINGS_ATTR, settings)
    enqueue_stage(study, space, target)
    return study


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def search(data: str | Dataset, *, module: nn.Module | None = None, **options: Any) -> Recommendation:
    """Run a search on ``data`` and return the recommendation (also written to ``out``).

    ``data`` is a ``--data`` spec (path or ``builtin:NAME``) or a ``samtune.data.Dataset``
    (e.g. from ``samtune.data.from_arrays``). ``options`` are :class:`SearchOptions` fields.
    ``module``: search on this ``nn.Module`` (each trial starts from a copy of its current
    weights) instead of a samtune model (the ``model`` option names one).

    >>> rec = search("builtin:wine", trials=2, epochs=1, confirm_seeds=1,
    ...              storage="sqlite:///:memory:", progress=False)  # doctest: +SKIP
    """
    opts = SearchOptions(**options)
    threads, verbosity = torch.get_num_threads(), optuna.logging.get_verbosity()
    if opts.progress:  # samtune's progress lines replace Optuna's per-trial log lines
        optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _search(data, module, opts)
    finally:
        torch.set_num_threads(threads)
        optuna.logging.set_verbosity(verbosity)


@dataclass
class Plan:
    """What a search request resolves to before any study is opened."""

    space: SearchSpace  # batch size and fixed lr applied
    train_config: TrainConfig
    factory: Callable[[], nn.Module]  # a fresh model each call
    model_name: str  # stored in the study: a named model, or module:<signature>
    model_label: str  # for messages: the model's name or class
    settings: dict[str, Any]  # what a resumed study must match (SETTINGS_ATTR)
    metric: Metric  # --metric, read against the data's classes


def plan(dataset: Dataset, opts: SearchOptions, module: nn.Module | None = None) -> Plan:
    """Resolve the request: metric, space, batch size, model, and the settings a study must
    match."""
    metric = parse_metric(opts.metric, dataset.classes)
    space = SearchSpace.load(opts.space)
    batch = TrainConfig(batch_size=opts.batch_size).resolve_batch_size(len(dataset.x_train))
    train_config = TrainConfig(epochs=opts.epochs, batch_size=batch, seed=opts.seed, device=opts.device)
    space = space.with_batch_size(batch)
    if opts.lr is not None:
        space = space.fix_lr(opts.lr)
    if module is not None:
        from samtune.models import model_signature

        label = f"{type(module).__name__} (the module given)"
        refuse_lazy(module, dataset.input_shape, label)
        factory = model_factory_from(module)
        model_name = f"module:{model_signature(module)[:16]}"
    else:
        from samtune.models import default_model_name

        factory = named_model_factory(opts.model, dataset)
        model_name = opts.model or default_model_name(dataset.input_shape)
        label = repr(model_name)
    return Plan(space, train_config, factory, model_name, label,
                _settings(dataset, space, train_config, model_name, metric), metric)


def search_settings(dataset: Dataset, module: nn.Module | None = None, **options: Any) -> dict[str, Any]:
    """The settings a search with ``options`` would store in its study (``autoconfigure``
    compares them with the stored studies')."""
    return plan(dataset, SearchOptions(**options), module).settings


def warn_small_test(dataset: Dataset, metric: Any = None) -> None:
    """Warn when the examples the confirmation tests are too few to show a gain of
    ``RESOLVE_GAIN``: the test split, or on folds every example outside val.

    The verdict's noise bound includes twice the standard error of the paired per-example
    difference. Even a gain with no example lost, a share g of n examples, has a standard error
    of sqrt(g (1 - g) / n), so it counts only when g > 4 / (n + 4).
    """
    folds = getattr(dataset, "folds", None)
    on_folds = folds is not None and decomposable(metric)
    n = folds.n if on_folds else len(dataset.y_test)
    what = (f"the confirmation tests {n} example(s) (every one outside val, on folds)" if on_folds
            else f"the test split has {n} example(s)")
    smallest = 4 / (n + 4)
    if smallest > RESOLVE_GAIN:
        warnings.warn(
            f"{what}: a gain must exceed about {100 * smallest:.1f} pp "
            f"to beat the noise bound even when no example is lost, so a gain of "
            f"{100 * RESOLVE_GAIN:.0f} pp cannot be shown; use more data (at least "
            f"{math.ceil(4 / RESOLVE_GAIN - 4)} test examples) for a verdict that can say 'use'",
            stacklevel=4)


def confirm_seeds(study: optuna.Study, opts: SearchOptions, n_candidates: int, end_time: float | None,
                  say: Callable[[str], None]) -> int:
    """Seeds per candidate: ``confirm_seeds``, fewer when the time budget would not fit them."""
    if end_time is None:
        return opts.confirm_seeds
    run = run_seconds(study)
    left = end_time - time.time()
    if run is None or run <= 0:
        return opts.confirm_seeds
    fit = max(1, min(opts.confirm_seeds, int(left // (run * n_candidates))))
    if fit < opts.confirm_seeds:
        say(f"--time-budget: {fmt_time(left)} left, about {fmt_time(run)} per run: confirming "
            f"with {fit} seed(s) instead of {opts.confirm_seeds}")
    return fit


def decomposable(metric: Any) -> bool:
    """Whether the metric is a mean over examples (accuracy, a cost), so that runs on
    different folds can be pooled example by example."""
    return metric is None or metric.decomposable


def fits(confirmed: list[dict[str, Any]], runs: int, end_time: float | None) -> bool:
    """Whether ``runs`` more confirmation runs fit before ``end_time`` (judged by the slowest
    confirmed configuration's runs so far)."""
    if end_time is None:
        return True
    per_run = max((c["seconds"] / len(c["test_accuracy"]["per_seed"])
                   for c in confirmed if c["test_accuracy"]["per_seed"]), default=0.0)
    return time.time() + runs * per_run <= end_time


def _search(data: str | Dataset, model: nn.Module | None, opts: SearchOptions) -> Recommendation:
    t_start = time.monotonic()
    end_time = None if opts.time_budget is None else time.time() + opts.time_budget
    from_spec = not isinstance(data, Dataset)  # workers can reload only a --data spec
    if not from_spec:
        dataset, data = data, data.source
    else:
        dataset = load_data(data, target=opts.target, drop=opts.drop, seed=opts.seed)
    p = plan(dataset, opts, model)
    checked = p.factory()
    check_model(checked, dataset.x_train, dataset.num_classes, p.model_label)
    torch.set_num_threads(cpu_threads(checked, opts.threads))
    name = opts.study or default_study_name(data, opts.model if model is None else None)
    storage_url = opts.storage or default_storage_url(name)
    shown_url = mask_url(storage_url)
    warn_small_test(dataset, p.metric)
    pruner = make_pruner(opts.pruner, epochs=opts.epochs, seed=opts.seed, top_k=opts.top_k,
                         val_size=len(dataset.y_val), value_name=value_name(p.metric.name))
    study = open_search_study(name, storage_url, p.settings, p.space, pruner, opts.seed,
                              opts.heartbeat, opts.trials)
    loadable = from_spec and model is None
    # the confirmation's smallest round: the top k, the cheapest near the best, one at another
    # lr, the baseline and the baseline at the next lr tried
    run = RunRecord(
        data=data if loadable else None, fingerprint=dataset.fingerprint, space=p.space.to_dict(),
        epochs=opts.epochs, batch_size=p.train_config.batch_size, trials=opts.trials,
        seed=opts.seed, target=opts.target, drop=list(opts.drop),
        model=p.model_name if loadable else None, pruner=opts.pruner, device=opts.device,
        threads=opts.threads, timeout=opts.timeout, top_k=opts.top_k, end_time=end_time,
        confirm_runs=opts.top_k + 4, val_size=len(dataset.y_val), metric=p.metric.name,
        cost_matrix=None if p.metric.cost_matrix is None else p.metric.cost_matrix.tolist())
    study.set_user_attr(RUN_ATTR, run.to_dict())

    already = len(_finished(study))
    remaining = opts.trials - already
    progress = Progress(opts.trials, enabled=opts.progress, value_name=value_name(p.metric.name))
    judged = "" if is_accuracy(p.metric) else f" | metric {metric_shown(p.settings)}"
    progress.say(f"samtune: study {name!r} in {shown_url} | data {data} "
                 f"({dataset.split_sizes()}) | model {p.model_name} | batch {p.train_config.batch_size} | "
                 f"{opts.epochs} epochs/trial | pruner {opts.pruner}{judged}")
    if remaining > 0:
        if already:
            progress.say(f"resuming: {already} finished trial(s) found, running {remaining} more")
        objective = Objective(dataset, p.space, p.train_config, p.factory, seed=opts.seed,
                              target=opts.trials, say=progress.say, metric=p.metric)
        if opts.workers > 1:
            if not loadable:
                raise ConfigError("--workers > 1 needs data given as a path or builtin:NAME and a "
                                  "named --model; data or models given from Python run in one process.")
            quotas = [remaining // opts.workers + (i < remaining % opts.workers) for i in range(opts.workers)]
            t_trials = time.monotonic()
            codes = spawn(name, storage_url, [q for q in quotas if q], seed=opts.seed,
                          heartbeat=opts.heartbeat, threads=opts.threads, progress=opts.progress,
                          say=progress.say)
            dead = [pid for pid, code in codes.items() if code != 0]
            if dead:
                reap_stale(study, opts.heartbeat, dead)
            if run.timeout is not None:
                run.timeout -= time.monotonic() - t_trials
        timeout, budget = trial_phase(run)
        if timeout is None or timeout > 0:  # this process tops up what workers left undone
            run_trials(study, objective, quota=None, target=opts.trials, timeout=timeout,
                       callbacks=[progress, *budget])
        if budget and len(_finished(study)) < opts.trials:
            progress.say(f"--time-budget: stopped after {len(_finished(study))} of {opts.trials} "
                         "trial(s) to leave time for the confirmation")
    else:
        progress.say(f"study already has {already} finished trial(s) (>= --trials {opts.trials})")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise SamtuneError(f"no trial of study {name!r} completed (all pruned or failed); "
                           "raise --trials or --epochs, or try --pruner none.")

    candidates = pick_candidates(study, opts.top_k, dict(p.space.base_kwargs, lr=opts.lr or 0.05),
                                 val_size=len(dataset.y_val), max_cost=opts.max_cost)
    seeds = confirm_seeds(study, opts, len(candidates), end_time, progress.say)
    max_seeds = max(seeds, opts.max_confirm_seeds or 2 * opts.confirm_seeds)
    folds = dataset.folds if dataset.folds is not None and decomposable(p.metric) else None
    where = ("on the held-out test split" if folds is None else
             f"on {folds.k} stratified folds of the {folds.n} examples outside val (samtune "
             "carved the test split: one fold per run)")
    progress.say(f"confirming {len(candidates)} configuration(s) x {seeds} seed(s) "
                 f"{where} (up to {max_seeds} while the verdict is open)")

    def on_run(i: int, n: int, config: Any, s: int, acc: float) -> None:
        scored = "" if is_accuracy(p.metric) else f", test {metric_label(p.metric)} {runner.last_score:.4f}"
        progress.say(f"  confirm {i}/{n}: {config.describe()} seed {s}: test_acc {acc:.4f}{scored}")

    runner = Runner(dataset, p.train_config, p.factory, seed=opts.seed, on_run=on_run,
                    say=progress.say, metric=p.metric, folds=folds)
    confirmed = confirm(candidates, dataset, p.train_config, p.factory, seeds=seeds, runner=runner)
    confirmed, other_bases = choose_baseline(confirmed, p.metric, getattr(dataset, "y_test", None))
    if other_bases:
        kept = next(c for c in confirmed if c["config"]["variant"] == "sgd")
        tried = ", ".join(f"{c['description']} {c['test_metric']['mean']:.4f}" for c in other_bases)
        progress.say(f"baseline: {kept['description']} ({kept['test_metric']['mean']:.4f} on test; "
                     f"also confirmed: {tried}) is the one the verdict is judged against "
                     "(another lr replaces the search's only when it wins beyond the noise)")
    # the verdict is judged among the candidates within --max-cost (by their measured cost)
    stopped = settle(admissible(confirmed, opts.max_cost), runner, max_seeds=max_seeds,
                     say=progress.say, afford=lambda runs: fits(confirmed, runs, end_time))
    rec = build_recommendation(study, confirmed, dataset, p.train_config, p.model_name,
                               shown_url, data, max_seeds=max_seeds, stopped=stopped,
                               metric=p.metric, max_cost=opts.max_cost, other_bases=other_bases)
    out = Path(opts.out) if opts.out else default_out_dir(storage_url, name)
    json_path, _ = rec.save(out)
    study.set_user_attr("recommendation", rec.to_dict())
    st = rec.study
    progress.say(f"trials: {st['n_complete']} complete ({st['n_complete_searched']} of them "
                 f"chosen by the search, the rest the baseline grid and warm starts), "
                 f"{st['n_pruned']} pruned")
    progress.say(f"done in {fmt_time(time.monotonic() - t_start)}: {rec.summary}")
    progress.say(f"recommendation: {json_path} (and .yaml)")
    return rec


def default_out_dir(storage_url: str, study: str) -> Path:
    path = sqlite_path(storage_url)
    if path is not None and str(path) != ":memory:":
        return path.parent / study
    return Path("samtune-out") / study


def stored_recommendation(study: str, storage: str | None = None) -> Recommendation:
    """The recommendation stored in a study (``samtune recommend``)."""
    url = storage or default_storage_url(study)
    s = load_study(study, open_storage(url, create=False))
    if "recommendation" not in s.user_attrs:
        raise SamtuneError(f"study {study!r} has no recommendation yet; finish it with 'samtune search'.")
    return Recommendation.from_dict(s.user_attrs["recommendation"])
