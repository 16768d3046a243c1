"""The pruners a samtune search can use, by name."""

from __future__ import annotations

import optuna

from samtune.errors import ConfigError
from samtune.search._forgetting_pruner import ForgettingPruner
from samtune.search._options import PRUNERS

# Replayed over the bank (benchmarks/replay.py, RESULTS.md "Pruners replayed over the bank"):
# with a bar of the plain top_k-th final and a chance of 0.5 the pruner stopped 73% of the
# trials of cells within noise of the best (the median pruner 42%) at twice the regret; with
# the bar lowered by two standard errors of the validation accuracy and a chance of 0.2, 14%.
FORGETTING_MIN_PROBABILITY = 0.2
FORGETTING_VAL_Z = 2.0


def make_pruner(
    name: str, *, epochs: int, seed: int | None = None, top_k: int = 2,
    val_size: int | None = None, value_name: str = "val_acc",
) -> optuna.pruners.BasePruner:
    """Build the pruner called ``name`` for trials of ``epochs`` epochs (reported as steps 1..epochs).

    - ``forgetting``: :class:`ForgettingPruner` (the default): stops the trials whose final
      reported value (validation accuracy or the search's metric), predicted from early forgetting signals, will very likely (chance of reaching
      the bar below ``FORGETTING_MIN_PROBABILITY``) keep them out of the ``top_k`` confirmed
      configurations (the search's ``top_k``), the bar lowered by ``FORGETTING_VAL_Z``
      standard errors of a validation accuracy on ``val_size`` examples (a trial that close to
      the bar may be as good as the one that set it), plus collapsed and inert (loss-ascent
      and random directions) perturbations; its prediction rule runs after 3 completed
      trials, up to
      epoch ``epochs // 2``: from epoch ``max(2, epochs // 5)`` (past the first epoch, the
      learning-rate warm-up of ``TrainConfig``) on the chance of being confirmed, before it
      only on a hopeless prediction (the chance at its floor).
    - ``median``: Optuna's ``MedianPruner`` on the reported value, from epoch
      ``max(1, epochs // 4)`` after 5 completed trials.
    - ``hyperband``: Optuna's ``HyperbandPruner`` with epochs as the resource.
    - ``none``: never prune.

    ``value_name`` names the reported value in the forgetting pruner's reasons (``val_acc``).
    ``seed`` is accepted for a uniform call signature; none of these pruners is random.
    """
    del seed  # no pruner here draws random numbers
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1 to build a pruner, got {epochs}.")
    if name == "forgetting":
        return ForgettingPruner(
            n_startup_trials=3, n_warmup_steps=max(2, epochs // 5), n_steps=epochs, top_k=top_k,
            min_probability=FORGETTING_MIN_PROBABILITY, val_size=val_size,
            val_noise_z=FORGETTING_VAL_Z, value_name=value_name,
        )
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 4))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; choose one of: {', '.join(PRUNERS)}.")
