"""A pruner that predicts a trial's final accuracy from its early forgetting signals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

# Features read from the history record at the current epoch; flip_rate and loss_gap
# are 0 for the baseline, which has no perturbed pass. is_baseline is appended last.
_RECORD_FEATURES = ("val_acc", "train_acc", "val_loss", "forgetting_rate")
_PERTURBED_FEATURES = ("flip_rate", "loss_gap")


class ForgettingPruner(optuna.pruners.BasePruner):
    """Prune a SAM-tuning trial when its early signals predict a final accuracy well below par.

    Validation accuracy at an early epoch already ranks final results well, but SAM learns
    more slowly early on: ranking on early accuracy alone (what ``MedianPruner`` does) kills
    SAM trials that would have won. This pruner instead predicts each trial's *final*
    validation accuracy from what it shows at the current epoch, with a model fitted on the
    trials that already finished in the same study, and prunes only when that prediction is
    confidently below the median final accuracy. It decides, in this order:

    1. Divergence: a non-finite ``val_loss`` or ``train_loss`` in the latest history record,
       or a NaN reported value, prunes at once, even during start-up.
    2. Collapsed perturbation: a SAM-family trial whose latest ``flip_rate`` (fraction of
       examples correct at w and wrong at w + e) is at least ``collapse_flip_rate``, from
       epoch 2 on, prunes: the ascent step undoes most of what the model gets right.
    3. Nothing else prunes before ``n_startup_trials`` trials have completed or before epoch
       ``n_warmup_steps``.
    4. Prediction: a ridge regression (standardized features, penalty ``ridge_alpha``) maps
       the completed trials' history record at the current epoch -- ``val_acc``,
       ``train_acc``, ``val_loss``, ``forgetting_rate``, ``flip_rate`` and ``loss_gap`` (0 for
       the baseline; centred within the SAM family, so they model the differences among
       SAM trials) and an is-baseline indicator (the family's shift) -- to their final
       value. Features constant over the completed trials are dropped. The trial is pruned
       when its predicted final accuracy is below the median completed final minus
       ``margin_sigmas`` times the RMS of the leave-one-out residuals, i.e. only when it is
       confidently worse than half the finished trials. The fitted model learns, on this study's data, how much the
       forgetting signals and the SAM indicator change the outcome, rather than a fixed rule.
    5. Fallback: with fewer usable completed trials than non-constant features + 2, the
       reported value is compared with the median reported value at the same epoch among
       completed trials of the same family (baseline vs SAM-family), and pruned only below that median minus
       ``fallback_tolerance``; with fewer than 2 completed trials in the family it is kept.

    After each call, ``last_reason`` holds the one-line reason of the decision when it pruned
    and ``None`` otherwise; the objective stores it in the ``prune_reason`` user attribute.
    With ``study.optimize(n_jobs > 1)`` threads share the pruner: read
    ``reason_for(trial.number)`` instead.

    Args:
        n_startup_trials: Completed trials needed before rules 4 and 5 apply.
        n_warmup_steps: First epoch (1-based step) at which rules 4 and 5 apply.
        collapse_flip_rate: Flip rate, in (0, 1], at or above which the perturbation counts
            as collapsed.
        margin_sigmas: How many leave-one-out residual standard deviations below the median
            final a prediction must fall to prune.
        ridge_alpha: Ridge penalty on the standardized features; must be positive.
        fallback_tolerance: Accuracy margin below the family median for the fallback rule.
    """

    def __init__(
        self,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 1,
        collapse_flip_rate: float = 0.5,
        margin_sigmas: float = 1.0,
        ridge_alpha: float = 1.0,
        fallback_tolerance: float = 0.02,
    ) -> None:
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials cannot be negative but got {n_startup_trials=}.")
        if n_warmup_steps < 0:
            raise ValueError(f"n_warmup_steps cannot be negative but got {n_warmup_steps=}.")
        if not 0.0 < collapse_flip_rate <= 1.0:
            raise ValueError(f"collapse_flip_rate must be in (0, 1] but got {collapse_flip_rate=}.")
        if not margin_sigmas >= 0.0:
            raise ValueError(f"margin_sigmas cannot be negative but got {margin_sigmas=}.")
        if not ridge_alpha > 0.0:
            raise ValueError(f"ridge_alpha must be positive but got {ridge_alpha=}.")
        if not fallback_tolerance >= 0.0:
            raise ValueError(
                f"fallback_tolerance cannot be negative but got {fallback_tolerance=}."
            )
        self._n_startup_trials = n_startup_trials
        self._n_warmup_steps = n_warmup_steps
        self._collapse_flip_rate = collapse_flip_rate
        self._margin_sigmas = margin_sigmas
        self._ridge_alpha = ridge_alpha
        self._fallback_tolerance = fallback_tolerance
        self.last_reason: str | None = None
        self._reasons: dict[int, str] = {}

    def reason_for(self, trial_number: int) -> str | None:
        """The reason this pruner pruned trial ``trial_number``, or ``None``."""
        return self._reasons.get(trial_number)

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        self.last_reason = None
        step = trial.last_step
        if step is None:
            return False
        history = _history(trial)
        latest = history[-1] if history else {}
        reported = float(trial.intermediate_values[step])
        bad = [k for k in ("val_loss", "train_loss") if not math.isfinite(_get(latest, k, 0.0))]
        if bad or math.isnan(reported):
            found = ", ".join(f"{k}={_get(latest, k, 0.0)}" for k in bad) or f"val_acc={reported}"
            return self._pruned(trial, f"diverged: {found} at epoch {step}")
        flip = _get(latest, "flip_rate", 0.0)
        if step >= 2 and flip >= self._collapse_flip_rate:
            return self._pruned(
                trial, f"collapsed perturbation: flip rate {flip:.3f} at epoch {step}"
            )
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if step < self._n_warmup_steps or len(completed) < self._n_startup_trials:
            return False
        prediction = self._predict(completed, trial, step)
        if prediction is None:
            return self._fallback(completed, trial, step, reported)
        predicted, threshold, sigma = prediction
        if predicted >= threshold:
            return False
        median = threshold + self._margin_sigmas * sigma
        return self._pruned(
            trial,
            f"predicted final val_acc {predicted:.3f} < threshold {threshold:.3f} (median "
            f"{median:.3f} - {self._margin_sigmas} x {sigma:.3f}) at epoch {step}",
        )

    def predict(
        self, study: optuna.study.Study, trial: FrozenTrial
    ) -> tuple[float, float, float] | None:
        """(predicted final value, pruning threshold, LOO residual std) at the trial's last
        step, or ``None`` when too few completed trials or features allow a fit."""
        if trial.last_step is None:
            return None
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return self._predict(completed, trial, trial.last_step)

    def _predict(
        self, completed: Sequence[FrozenTrial], trial: FrozenTrial, step: int
    ) -> tuple[float, float, float] | None:
        x_now = _features(trial, step)
        if x_now is None:
            return None
        rows = [(x, t.value) for t in completed if (x := _features(t, step)) is not None]
        rows = [(x, float(y)) for x, y in rows if y is not None and math.isfinite(y)]
        if len(rows) < 2:
            return None
        x = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        # Centre the perturbed signals within the SAM family so that they carry the variation
        # among SAM trials and the indicator alone carries the family's shift.
        sam, perturbed = x[:, -1] == 0.0, slice(len(_RECORD_FEATURES), -1)
        if sam.any():
            sam_mean = x[sam, perturbed].mean(axis=0)
            x[sam, perturbed] -= sam_mean
            x_now[perturbed] -= sam_mean if x_now[-1] == 0.0 else 0.0
        std = x.std(axis=0)
        keep = std > 1e-12
        if len(rows) < int(keep.sum()) + 2:
            return None
        mean = x.mean(axis=0)[keep]
        z = np.hstack([np.ones((len(y), 1)), (x[:, keep] - mean) / std[keep]])
        penalty = self._ridge_alpha * np.eye(z.shape[1])
        penalty[0, 0] = 0.0  # the intercept is not shrunk
        inverse = np.linalg.inv(z.T @ z + penalty)
        coef = inverse @ z.T @ y
        leverage = np.einsum("ij,jk,ik->i", z, inverse, z)
        loo = (y - z @ coef) / np.clip(1.0 - leverage, 1e-9, None)
        sigma = float(np.sqrt(np.mean(loo**2)))
        z_now = np.concatenate([[1.0], (x_now[keep] - mean) / std[keep]])
        threshold = float(np.median(y)) - self._margin_sigmas * sigma
        return float(z_now @ coef), threshold, sigma

    def _fallback(
        self, completed: Sequence[FrozenTrial], trial: FrozenTrial, step: int, reported: float
    ) -> bool:
        family = _is_baseline(trial)
        peers = [
            float(t.intermediate_values[step])
            for t in completed
            if step in t.intermediate_values and _is_baseline(t) == family
        ]
        peers = [v for v in peers if math.isfinite(v)]
        if len(peers) < 2:
            return False
        median = float(np.median(peers))
        if reported >= median - self._fallback_tolerance:
            return False
        name = "baseline" if family else "SAM-family"
        return self._pruned(
            trial,
            f"val_acc {reported:.3f} < {name} median {median:.3f} - {self._fallback_tolerance}"
            f" at epoch {step} ({len(peers)} completed; no predictor fitted)",
        )

    def _pruned(self, trial: FrozenTrial, reason: str) -> bool:
        self.last_reason = reason
        self._reasons[trial.number] = reason
        return True


def _history(trial: FrozenTrial) -> list[Mapping[str, Any]]:
    history = trial.user_attrs.get("history")
    return list(history) if isinstance(history, Sequence) else []


def _get(record: Mapping[str, Any], key: str, default: float) -> float:
    value = record.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _is_baseline(trial: FrozenTrial) -> bool:
    variant = trial.params.get("variant")
    if variant is not None:
        return variant == "sgd"
    history = _history(trial)
    return not history or "flip_rate" not in history[-1]


def _features(trial: FrozenTrial, step: int) -> np.ndarray | None:
    """The feature vector of ``trial`` at epoch ``step``, or None if missing or non-finite."""
    record = next((r for r in _history(trial) if r.get("epoch") == step), None)
    if record is None:
        return None
    baseline = _is_baseline(trial)
    values = [_get(record, k, math.nan) for k in _RECORD_FEATURES]
    values += [0.0 if baseline else _get(record, k, math.nan) for k in _PERTURBED_FEATURES]
    values.append(1.0 if baseline else 0.0)
    return np.array(values) if all(math.isfinite(v) for v in values) else None
