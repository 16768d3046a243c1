"""``search``: the product's main job, from data to a recommended configuration."""

from __future__ import annotations

import time
import warnings
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
from samtune.search._confirm import confirm, pick_candidates
from samtune.search._objective import Objective, model_factory_from, named_model_factory
from samtune.search._progress import Progress, fmt_time
from samtune.search._pruners import make_pruner
from samtune.search._recommendation import Recommendation, build_recommendation
from samtune.search._space import SearchSpace
from samtune.search._storage import (
    HEARTBEAT_S,
    default_storage_url,
    default_study_name,
    load_study,
    open_storage,
    sqlite_path,
)
from samtune.search._workers import RUN_ATTR, make_sampler, reap_stale, run_trials, spawn
from samtune.train import TrainConfig

SETTINGS_ATTR = "samtune"  # study user attribute holding what the study was made with
SMALL_MODEL_PARAMS = 2_000_000  # below this, train on one CPU thread (see cpu_threads)


@dataclass
class SearchOptions:
    """Everything ``samtune search`` takes; the CLI's options map one to one."""

    trials: int = 24  # finished (complete or pruned) trials to reach; a resumed study is topped up
    timeout: float | None = None  # seconds for the trial phase; None: no limit
    epochs: int = 12  # epochs per trial and per confirmation run
    batch_size: int | None = None  # None: chosen from the training-set size (TrainConfig)
    study: str | None = None  # None: named after the data
    storage: str | None = None  # None: sqlite:///studies/<study>.db
    pruner: str = "forgetting"  # forgetting, median, hyperband, none
    space: str = "default"  # a preset name (default, quick, paper) or a YAML file
    lr: float | None = None  # fix the base learning rate instead of searching it
    model: str | None = None  # mlp, cnn, resnet18 or package.module:function; None: by data kind
    target: str | None = None  # CSV target column
    seed: int = 0  # data split, sampler and trial seeds
    out: str | None = None  # recommendation folder; None: beside the study
    confirm_seeds: int = 3  # seeds per confirmed configuration
    top_k: int = 2  # distinct top configurations confirmed (plus the best baseline)
    device: str | None = None  # None: cuda when present, else cpu
    threads: int | None = None  # torch CPU threads; None: 1 for small models, else torch's default
    workers: int = 1  # processes running trials on this machine (more join with samtune worker)
    heartbeat: int = HEARTBEAT_S  # seconds between a running trial's heartbeats (3 missed: stale)
    progress: bool = True  # print progress to stderr

    def __post_init__(self) -> None:
        for name, low in (("trials", 1), ("epochs", 1), ("confirm_seeds", 1), ("top_k", 1),
                          ("workers", 1), ("heartbeat", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be a whole number >= {low}, but got {value!r}.")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, but got {self.timeout!r}.")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"--threads must be a whole number >= 1, but got {self.threads!r}.")
        if self.lr is not None and not 0 < self.lr <= 10:
            raise ConfigError(f"--lr must be in (0, 10], but got {self.lr!r}.")


def _settings(data: Any, space: SearchSpace, train: TrainConfig, model: str) -> dict[str, Any]:
    return {"fingerprint": data.fingerprint, "space": space.digest(), "space_name": space.name,
            "epochs": train.epochs, "batch_size": train.batch_size, "model": model,
            "dataset": data.describe(), "samtune_version": samtune.__version__}


def _check_same(study: optuna.Study, settings: dict[str, Any]) -> None:
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        if study.trials:
            raise SamtuneError(f"study {study.study_name!r} was not made by samtune; choose another --study name.")
        return
    labels = {"fingerprint": "data (fingerprint)", "space": "search space", "epochs": "--epochs",
              "batch_size": "batch size", "model": "model"}
    for key, label in labels.items():
        if stored.get(key) != settings[key]:
            raise SamtuneError(
                f"study {study.study_name!r} was made with a different {label} "
                f"({stored.get(key)!s:.16} vs {settings[key]!s:.16}); use a new --study name "
                "or the original settings."
            )


def open_search_study(
    name: str, storage_url: str, settings: dict[str, Any], space: SearchSpace,
    pruner: optuna.pruners.BasePruner, seed: int, heartbeat: int,
) -> optuna.Study:
    """Create the study once (or load it), refuse a mismatch, enqueue the warm start."""
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
    for params in space.warm_start_params():
        study.enqueue_trial(params, skip_if_exists=True)
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


def cpu_threads(model: nn.Module, requested: int | None) -> int:
    """Small models gain nothing from intra-op threads and lose a lot when threads compete
    with other processes, so they train on one thread; larger ones keep torch's default."""
    if requested is not None:
        return requested
    n_params = sum(p.numel() for p in model.parameters())
    return 1 if n_params < SMALL_MODEL_PARAMS else torch.get_num_threads()


def _search(data: str | Dataset, model: nn.Module | None, opts: SearchOptions) -> Recommendation:
    t_start = time.monotonic()
    from_spec = not isinstance(data, Dataset)  # workers can reload only a --data spec
    if not from_spec:
        dataset, data = data, data.source
    else:
        dataset = load_data(data, target=opts.target, seed=opts.seed)
    space = SearchSpace.load(opts.space)
    batch = TrainConfig(batch_size=opts.batch_size).resolve_batch_size(len(dataset.x_train))
    train_config = TrainConfig(epochs=opts.epochs, batch_size=batch, seed=opts.seed, device=opts.device)
    space = space.with_batch_size(batch)
    if opts.lr is not None:
        space = space.fix_lr(opts.lr)
    if model is not None:
        factory = model_factory_from(model)
        from samtune.models import model_signature
        model_name = f"module:{model_signature(model)[:16]}"
    else:
        factory = named_model_factory(opts.model, dataset)
        from samtune.models import default_model_name
        model_name = opts.model or default_model_name(dataset.input_shape)
    torch.set_num_threads(cpu_threads(factory(), opts.threads))
    name = opts.study or default_study_name(data)
    storage_url = opts.storage or default_storage_url(name)
    settings = _settings(dataset, space, train_config, model_name)
    pruner = make_pruner(opts.pruner, epochs=opts.epochs, seed=opts.seed, top_k=opts.top_k)
    study = open_search_study(name, storage_url, settings, space, pruner, opts.seed, opts.heartbeat)
    loadable = from_spec and model is None
    study.set_user_attr(RUN_ATTR, {
        "data": data if loadable else None, "target": opts.target, "seed": opts.seed,
        "space": space.to_dict(), "epochs": opts.epochs, "batch_size": batch,
        "model": model_name if loadable else None, "pruner": opts.pruner, "device": opts.device,
        "threads": opts.threads, "trials": opts.trials, "timeout": opts.timeout, "top_k": opts.top_k,
        "fingerprint": dataset.fingerprint,
    })

    already = len(_finished(study))
    remaining = opts.trials - already
    progress = Progress(opts.trials, enabled=opts.progress)
    progress.say(f"samtune: study {name!r} in {storage_url} | data {data} "
                 f"({dataset.split_sizes()}) | model {model_name} | batch {batch} | "
                 f"{opts.epochs} epochs/trial | pruner {opts.pruner}")
    if remaining > 0:
        if already:
            progress.say(f"resuming: {already} finished trial(s) found, running {remaining} more")
        objective = Objective(dataset, space, train_config, factory, seed=opts.seed, target=opts.trials,
                              say=progress.say)
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
            timeout = None if opts.timeout is None else opts.timeout - (time.monotonic() - t_trials)
        else:
            timeout = opts.timeout
        if timeout is None or timeout > 0:  # this process tops up what workers left undone
            run_trials(study, objective, quota=None, target=opts.trials, timeout=timeout,
                       callbacks=[progress])
    else:
        progress.say(f"study already has {already} finished trial(s) (>= --trials {opts.trials})")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise SamtuneError(f"no trial of study {name!r} completed (all pruned or failed); "
                           "raise --trials or --epochs, or try --pruner none.")

    candidates = pick_candidates(study, opts.top_k, dict(space.base_kwargs, lr=opts.lr or 0.05))
    progress.say(f"confirming {len(candidates)} configuration(s) x {opts.confirm_seeds} seed(s) "
                 "on the held-out test split")

    def on_run(i: int, n: int, config: Any, s: int, acc: float) -> None:
        progress.say(f"  confirm {i}/{n}: {config.describe()} seed {s}: test_acc {acc:.4f}")

    confirmed = confirm(candidates, dataset, train_config, factory, seeds=opts.confirm_seeds,
                        seed=opts.seed, on_run=on_run, say=progress.say)
    rec = build_recommendation(study, confirmed, dataset, train_config, model_name, storage_url, data)
    out = Path(opts.out) if opts.out else default_out_dir(storage_url, name)
    json_path, _ = rec.save(out)
    study.set_user_attr("recommendation", rec.to_dict())
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
