"""The library's front door: search as a call, load a recommendation, auto-configure a job."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from samtune.data import Dataset, from_arrays, load_data
from samtune.errors import ConfigError, NotFittedError, SamtuneError
from samtune.models import model_signature
from samtune.models.check import refuse_lazy
from samtune.optim import SAMConfig, SAMOptimizer, build_optimizer
from samtune.schedules import lr_factor
from samtune.search import Recommendation, SearchOptions, search, stored_recommendation
from samtune.search._search import SETTINGS_ATTR, differences, search_settings
from samtune.search._storage import default_storage_url, open_storage
from samtune.search._workers import RUN_ATTR

AUTO_STUDIES = "autoconfigure"  # default database of autoconfigure's studies: studies/autoconfigure.db


def load_recommendation(path_or_study: str | os.PathLike, storage: str | None = None) -> Recommendation:
    """A recommendation from ``recommendation.json``/``.yaml`` (or their folder), or from a study.

    >>> rec = load_recommendation("studies/digits/recommendation.json")  # doctest: +SKIP
    >>> optimizer = build_optimizer(model, rec.config)  # doctest: +SKIP
    """
    path = Path(path_or_study)
    if path.exists():
        return Recommendation.load(path)
    if path.suffix in (".json", ".yaml", ".yml") or os.sep in str(path_or_study):
        raise SamtuneError(f"recommendation file {str(path)!r} does not exist; run 'samtune search' first.")
    return stored_recommendation(str(path_or_study), storage)


def as_dataset(data: Any, *, seed: int = 0, target: str | None = None) -> Dataset:
    """A samtune ``Dataset`` from a spec, a ``Dataset``, ``(x, y)``, a torch Dataset or DataLoader."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, str | os.PathLike):
        return load_data(data, seed=seed, target=target)
    return from_arrays(data, seed=seed)


def find_recommendation(storage: str, settings: dict[str, Any], budget: int,
                        max_cost: float | None = None,
                        ) -> tuple[tuple[str, Recommendation] | None, list[str]]:
    """The recommendation of a stored study that matches the request, and why the others
    made on this data and architecture do not.

    A study matches when it was made on the same data (fingerprint) and model architecture
    with the same search space, epochs per trial and batch size, ran at least ``budget``
    trials, and recommended under the same ``max_cost`` (none: no limit). Returns ``((study name, recommendation) or None, ["study 'x': epochs 3 vs 30", ...])``.
    """
    path = storage[len("sqlite:///"):] if storage.startswith("sqlite:///") else None
    if path is not None and not Path(path).exists():
        return None, []
    mismatches = []
    for summary in optuna.get_all_study_summaries(open_storage(storage)):
        stored = summary.user_attrs.get(SETTINGS_ATTR, {})
        if (stored.get("fingerprint") != settings["fingerprint"] or stored.get("model") != settings["model"]
                or "recommendation" not in summary.user_attrs):
            continue
        differ = differences(stored, settings)
        trials = summary.user_attrs.get(RUN_ATTR, {}).get("trials", 0)
        if trials < budget:
            differ.append(f"budget {trials} vs {budget} trial(s)")
        held = summary.user_attrs["recommendation"].get("max_cost")
        if held != max_cost:
            differ.append(f"max_cost {held} vs {max_cost}")
        if differ:
            mismatches.append(f"study {summary.study_name!r}: {'; '.join(differ)}")
            continue
        return (summary.study_name, Recommendation.from_dict(summary.user_attrs["recommendation"])), []
    return None, mismatches


def _metric_suffix(settings: dict[str, Any]) -> str:
    """``""`` for accuracy, else ``-macro_f1`` or ``-cost3f2a9c1b``: a study per metric."""
    if settings.get("metric_digest"):
        return f"-cost{settings['metric_digest'][:8]}"
    return "" if settings.get("metric", "accuracy") == "accuracy" else f"-{settings['metric']}"


def _fresh_name(storage: str, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``, ... : the first that storage does not hold."""
    path = storage[len("sqlite:///"):] if storage.startswith("sqlite:///") else None
    if path is not None and not Path(path).exists():
        return name
    taken = {s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))}
    n, fresh = 1, name
    while fresh in taken:
        n += 1
        fresh = f"{name}-{n}"
    return fresh


@dataclass
class AutoConfig:
    """What ``autoconfigure`` hands your training loop."""

    optimizer: SAMOptimizer  # the SAM-family (or tuned baseline) optimizer, rho schedule wired
    scheduler: torch.optim.lr_scheduler.LRScheduler  # warm-up then cosine; step it every batch
    recommendation: Recommendation
    reused: bool  # True when a stored study's recommendation was reused
    message: str  # what was decided, in one sentence

    @property
    def config(self) -> SAMConfig:
        return self.recommendation.config

    @property
    def verdict(self) -> str:
        return self.recommendation.verdict


def autoconfigure(
    model: nn.Module,
    data: Any,
    *,
    steps_per_epoch: int | None = None,
    epochs: int = 10,
    batch_size: int | None = None,
    storage: str | None = None,
    budget: int = 12,
    search_epochs: int | None = None,
    seed: int = 0,
    progress: bool = False,
    fresh: bool = False,
    max_cost: float | None = None,
    **search_options: Any,
) -> AutoConfig:
    """Configure SAM for *your* model and data; returns the optimizer and lr scheduler.

    Reuses the recommendation of a stored study that matches the request: the same data
    (fingerprint), model architecture (module tree and parameter shapes), search space,
    epochs per trial (``search_epochs``, default ``epochs``) and batch size, and at least
    ``budget`` trials. Otherwise it runs a search of ``budget`` trials on ``model`` itself
    (each trial starts from a copy of its initial weights; ``model`` is left untouched), and
    ``message`` says what differed in the studies it did not reuse. ``fresh=True`` searches
    anew in a new study whatever is stored. ``data``: a ``--data`` spec, a samtune ``Dataset``,
    ``(x, y)`` tensors, a torch ``Dataset`` or a ``DataLoader`` (its batch size is used, so the
    recommended m divides your batches). ``steps_per_epoch`` x ``epochs`` wires the rho and lr
    schedules to your run. ``search_options`` are further ``SearchOptions`` fields, e.g.
    ``metric="balanced_accuracy"``; a stored study is reused only if it was judged on the same
    metric. ``max_cost``: recommend only a configuration at most that many times the
    baseline's training cost (``SearchOptions.max_cost``); a stored recommendation is reused
    only if it was made under the same limit.

    >>> auto = autoconfigure(model, loader, epochs=20)  # doctest: +SKIP
    >>> for x, y in loader:  # doctest: +SKIP
    ...     auto.optimizer.train_step(model, x, y, loss_fn); auto.scheduler.step()
    """
    if "trials" in search_options:
        raise ConfigError(f"autoconfigure takes its trial count as budget=, not trials=; "
                          f"pass budget={search_options['trials']!r}.")
    if batch_size is None and isinstance(data, torch.utils.data.DataLoader):
        batch_size = data.batch_size
    dataset = as_dataset(data, seed=seed, target=search_options.pop("target", None))
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a whole number >= 1, but got {epochs!r}.")
    if not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget (trials) must be a whole number >= 1, but got {budget!r}.")
    if not isinstance(fresh, bool):
        raise ConfigError(f"fresh must be True or False, but got {fresh!r}.")
    refuse_lazy(model, dataset.input_shape, f"{type(model).__name__} (the module given)")
    signature = model_signature(model)
    url = storage or default_storage_url(AUTO_STUDIES)
    opts = SearchOptions(trials=budget, epochs=search_epochs or epochs, batch_size=batch_size,
                         storage=url, seed=seed, progress=progress, max_cost=max_cost,
                         **search_options)
    fields = {k: getattr(opts, k) for k in opts.__dataclass_fields__ if k not in ("model", "study")}
    settings = search_settings(dataset, module=model, **fields)
    found, mismatches = (None, []) if fresh else find_recommendation(url, settings, budget, max_cost)
    if found is not None:
        study_name, rec = found
        reused, where = True, f"reused study {study_name!r} (same data, architecture, epochs, batch size; >= {budget} trials)"
    else:
        study_name = opts.study or (f"auto-{dataset.fingerprint[:8]}-{signature[:8]}"
                                    f"-e{settings['epochs']}-b{settings['batch_size']}"
                                    f"{_metric_suffix(settings)}")
        if fresh:
            study_name = _fresh_name(url, study_name)
        rec = search(dataset, module=model, study=study_name, **fields)
        reused, where = False, f"searched {budget} trial(s) in study {study_name!r}"
        if mismatches:
            where += f" (not reusing {', '.join(mismatches)})"
        elif fresh:
            where += " (fresh=True)"
    if steps_per_epoch is None:
        batch = rec.train.get("batch_size") or batch_size or 64
        steps_per_epoch = max(1, len(dataset.x_train) // batch)
    total = steps_per_epoch * epochs
    warmup = min(steps_per_epoch, total // 10)
    optimizer = build_optimizer(model, rec.config, total_steps=total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps=total, warmup_steps=warmup))
    if rec.verdict == "use":
        message = f"{where}: using {rec.config.describe()}"
    else:
        kind = "tuned" if rec.baseline.get("tuned", True) else "untuned fallback"
        why = ("SAM's gain was neither shown nor ruled out (inconclusive: see the recommendation's "
               "summary for what would settle it)" if rec.verdict == "inconclusive"
               else "SAM did not help on this data")
        message = f"{where}: {why}; using the {kind} baseline {rec.config.describe()}"
    return AutoConfig(optimizer, scheduler, rec, reused, message)


class SamSearch:
    """scikit-learn-style search: ``SamSearch(**options).fit(data)``.

    Options are ``samtune search``'s (see ``SearchOptions``; ``metric="macro_f1"`` judges on
    macro F1). After ``fit``: ``recommendation_``, ``best_config_`` (the recommended
    ``SAMConfig``), ``best_params_`` (the same as a dict, ``SAMConfig.from_dict`` rebuilds it),
    ``best_score_`` (its mean test score on the metric over the confirmation seeds: held-out
    data, as scikit-learn's is; accuracy by default, and for a cost metric minus the mean cost,
    so that higher is better as with scikit-learn's scorers), ``study_`` (the Optuna study).

    >>> s = SamSearch(trials=4, epochs=2)
    >>> s.best_config_
    Traceback (most recent call last):
    ...
    samtune.errors.NotFittedError: this SamSearch is not fitted yet; call fit(data) first.
    """

    def __init__(self, **options: Any) -> None:
        SearchOptions(**options)  # validate now, not after loading data
        self.options = options
        self._recommendation: Recommendation | None = None

    def fit(self, data: Any, model: nn.Module | None = None) -> SamSearch:
        dataset = as_dataset(data, seed=self.options.get("seed", 0), target=self.options.get("target"))
        self._recommendation = search(dataset, module=model, **self.options)
        return self

    def _fitted(self) -> Recommendation:
        if self._recommendation is None:
            raise NotFittedError("this SamSearch is not fitted yet; call fit(data) first.")
        return self._recommendation

    @property
    def recommendation_(self) -> Recommendation:
        return self._fitted()

    @property
    def best_config_(self) -> SAMConfig:
        return self._fitted().config

    @property
    def best_params_(self) -> dict[str, Any]:
        return self._fitted().config.to_dict()

    @property
    def best_score_(self) -> float:
        rec = self._fitted()
        if not rec.test_metric:  # a recommendation made before --metric: judged on accuracy
            return float(rec.test_accuracy["mean"])
        mean = float(rec.test_metric["mean"])
        return mean if rec.metric.get("greater_is_better", True) else -mean

    @property
    def study_(self) -> optuna.Study:
        name = self._fitted().study["name"]  # the stored URL has its password masked
        storage = self.options.get("storage") or default_storage_url(name)
        return optuna.load_study(study_name=name, storage=storage)
