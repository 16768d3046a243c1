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
from samtune.optim import SAMConfig, SAMOptimizer, build_optimizer
from samtune.schedules import lr_factor
from samtune.search import Recommendation, SearchOptions, search, stored_recommendation
from samtune.search._search import SETTINGS_ATTR
from samtune.search._storage import default_storage_url, open_storage

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


def find_recommendation(storage: str, fingerprint: str, model: str) -> tuple[str, Recommendation] | None:
    """The recommendation of a stored study made on this data and this model architecture."""
    path = storage[len("sqlite:///"):] if storage.startswith("sqlite:///") else None
    if path is not None and not Path(path).exists():
        return None
    for summary in optuna.get_all_study_summaries(open_storage(storage)):
        settings = summary.user_attrs.get(SETTINGS_ATTR, {})
        if (settings.get("fingerprint") == fingerprint and settings.get("model") == model
                and "recommendation" in summary.user_attrs):
            return summary.study_name, Recommendation.from_dict(summary.user_attrs["recommendation"])
    return None


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
    **search_options: Any,
) -> AutoConfig:
    """Configure SAM for *your* model and data; returns the optimizer and lr scheduler.

    Reuses the recommendation of a stored study made on the same data (fingerprint) and the same
    model architecture (module tree and parameter shapes); otherwise runs a search of ``budget``
    trials on ``model`` itself (each trial starts from a copy of its initial weights; ``model``
    is left untouched) with ``search_epochs`` (default ``epochs``) per trial. ``data``: a
    ``--data`` spec, a samtune ``Dataset``, ``(x, y)`` tensors, a torch ``Dataset`` or a
    ``DataLoader`` (its batch size is used, so the recommended m divides your batches).
    ``steps_per_epoch`` x ``epochs`` wires the rho and lr schedules to your run.

    >>> auto = autoconfigure(model, loader, epochs=20)  # doctest: +SKIP
    >>> for x, y in loader:  # doctest: +SKIP
    ...     auto.optimizer.train_step(model, x, y, loss_fn); auto.scheduler.step()
    """
    if batch_size is None and isinstance(data, torch.utils.data.DataLoader):
        batch_size = data.batch_size
    dataset = as_dataset(data, seed=seed, target=search_options.pop("target", None))
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a whole number >= 1, but got {epochs!r}.")
    if not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget (trials) must be a whole number >= 1, but got {budget!r}.")
    signature = model_signature(model)
    model_key = f"module:{signature[:16]}"
    url = storage or default_storage_url(AUTO_STUDIES)
    found = find_recommendation(url, dataset.fingerprint, model_key)
    if found is not None:
        study_name, rec = found
        reused, where = True, f"reused study {study_name!r}"
    else:
        study_name = f"auto-{dataset.fingerprint[:8]}-{signature[:8]}"
        opts = SearchOptions(trials=budget, epochs=search_epochs or epochs, batch_size=batch_size,
                             storage=url, study=study_name, seed=seed, progress=progress,
                             **search_options)
        fields = {k: getattr(opts, k) for k in opts.__dataclass_fields__ if k != "model"}
        rec = search(dataset, module=model, **fields)
        reused, where = False, f"searched {budget} trial(s) in study {study_name!r}"
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
        message = f"{where}: SAM did not help on this data; using the tuned baseline {rec.config.describe()}"
    return AutoConfig(optimizer, scheduler, rec, reused, message)


class SamSearch:
    """scikit-learn-style search: ``SamSearch(**options).fit(data)``.

    Options are ``samtune search``'s (see ``SearchOptions``). After ``fit``: ``recommendation_``,
    ``best_config_`` (a ``SAMConfig``), ``study_`` (the Optuna study).

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
    def study_(self) -> optuna.Study:
        rec = self._fitted()
        return optuna.load_study(study_name=rec.study["name"], storage=rec.study["storage"])
