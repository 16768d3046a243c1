"""A pruner that predicts a trial's final reported value (validation accuracy, or the search's
metric) from its early forgetting signals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from samtune.errors import ConfigError
from samtune.optim import get_variant

# Features read from the history record at the current epoch; flip_rate and loss_gap
# are 0 for the baseline, which has no perturbed pass. is_baseline is appended last.
# val_metric is the reported value (val_acc itself for accuracy; histories written before
# --metric have val_acc only, which is read instead).
_RECORD_FEATURES = ("val_metric", "train_acc", "val_loss", "forgetting_rate")
_PERTURBED_FEATURES = ("flip_rate", "loss_gap")
# Losses are unbounded (a high learning rate can send val_loss to 5 at epoch 2 and still end
# well); they are clipped to the fitted range. Accuracies and rates live in [0, 1] and are not.
_UNBOUNDED = np.array(
    [k in ("val_loss", "loss_gap") for k in (*_RECORD_FEATURES, *_PERTURBED_FEATURES, "is_baseline")]
)
_MIN_FIT_ROWS = 3  # completed trials needed to fit the predictor and leave one out


@dataclass(frozen=True)
class Prediction:
    """What the predictor says about a running trial at its current epoch."""

    predicted: float  # predicted final reported value (validation accuracy or metric)
    bar: float  # final value the trial must reach to matter (see ForgettingPruner, rule 5)
    probability: float  # estimated chance of finishing at or above the bar
    n_completed: int  # completed trials the predictor was fitted on

    @property
    def floor(self) -> float:
        """The lowest chance the jackknife can give, ``1 / (n_completed + 1)``: no completed
        trial's leave-one-out error carries the prediction to the bar."""
        return 1.0 / (self.n_completed + 1)


class ForgettingPruner(optuna.pruners.BasePruner):
    """Prune a SAM-tuning trial when its early signals say it will not change the recommendation.

    The search ends by confirming its ``top_k`` best completed configurations and its best
    baseline; a trial matters only if it can join them. Validation accuracy at an early epoch
    ranks final results only loosely, and SAM learns more slowly early on: ranking on early
    accuracy alone (what ``MedianPruner`` does) kills SAM trials that would have won. This
    pruner predicts the *final* reported value (validation accuracy, or the utility of the
    search's ``--metric``) instead, prunes the trials that will more likely
    than not stay out of the confirmed set, and adds rules that only SAM's two passes make
    possible. It decides, in this order:

    1. Divergence: a non-finite ``val_loss`` or ``train_loss`` in the latest history record,
       or a NaN reported value, prunes at once, even during start-up.
    2. Collapsed perturbation: a SAM-family trial whose latest ``flip_rate`` (fraction of
       examples correct at w and wrong at w + e) is at least ``collapse_flip_rate``, from
       epoch 2 on, prunes: the ascent step undoes most of what the model gets right.
    3. Inert perturbation: a SAM-family trial with a loss-ascent or random direction (not
       the OBF family, whose perturbation aims at output biases and raises the loss only a
       little by design) whose perturbation raises the training loss by
       less than ``inert_loss_gap`` of its value (``loss_gap / train_loss``, read once, at
       epoch ``max(2, n_warmup_steps)``) prunes: its perturbation
       changes nothing to first order (random directions, a vanishing rho), so the trial is
       the baseline at twice the cost per step, and the baseline family already covers it.
    4. Nothing else prunes before ``n_startup_trials`` trials have completed, nor after half
       of ``n_steps`` epochs: a later stop saves less than half a trial, while the trial's
       result is nearly known and worth more as a completed trial (for the predictor, for
       the sampler and as a candidate) than the epochs it would save. The default start-up
       is 3, the fewest completed trials the predictor can fit and leave one out of; rule 5
       needs no more, because its chance already says how little 3 trials show (see there).
    5. Unlikely to be confirmed: a ridge regression (standardized features, penalty
       ``ridge_alpha``) maps the completed trials' history record at the current epoch --
       ``val_metric`` (the reported value; ``val_acc`` for accuracy), ``train_acc``,
       ``val_loss``, ``forgetting_rate``, ``flip_rate`` and
       ``loss_gap`` (0 for the baseline; centred within the SAM family, so they model the
       differences among SAM trials) and an is-baseline indicator (the family's shift) --
       to their final value. The running trial's losses are clipped to the range the fit
       has seen (a linear model is not trusted beyond it, and losses are unbounded: a high
       learning rate can blow up an early validation loss and still end well); accuracies
       and rates are bounded and used as they are. Its prediction plus each
       completed trial's leave-one-out residual gives an empirical predictive distribution
       (the jackknife). For a SAM-family trial the bar is the ``top_k``-th best completed
       SAM-family final value (the search confirms ``top_k`` SAM-family configurations
       besides the baseline), and the rule waits until ``n_startup_trials`` SAM-family trials
       have completed: a predictor fitted on baselines alone has never seen SAM's slower
       start. For a baseline trial the bar is the ``top_k``-th best completed final value, no
       higher than the best completed baseline's (the best baseline is
       confirmed too: it is the reference of the verdict, so it must stay well tuned). The
       chance of finishing at or above the bar is the share of those values that reach it,
       counting the trial itself as one more that does: ``(hits + 1) / (n + 1)`` for ``n``
       completed trials, so it never falls below its floor ``1 / (n + 1)``. From epoch
       ``n_warmup_steps`` on, the trial is pruned when that chance is below
       ``min_probability``: with 0.5, when it will more likely than not stay out of the
       confirmed set. Where the signals predict poorly, the residuals are wide and a trial
       is kept on the strength of its family's spread; a trial that looks like the
       completed ones is pruned once ``top_k`` of them finish above it more often than not,
       which is what a search whose warm starts are already the best should do.
       With few completed trials the floor is high and the rule is strict by itself: with
       3, a chance below 0.5 means that none of the 3 jackknife values reaches the bar.
    6. Hopeless during the warm-up: before epoch ``n_warmup_steps`` (keep it past the
       learning-rate warm-up: during warm-up the curves say more about the warm-up than
       about the configuration), rule 5 prunes only at its floor, when not one completed
       trial's leave-one-out error would carry the prediction to the bar
       (``hopeless_in_warmup``). The residuals are those of the same epoch, so they already
       measure how much the warm-up blurs the prediction; a trial that misses the bar even
       with the most favourable error the predictor has made is hopeless by every measure
       it has, and waiting out the warm-up would only spend epochs on it.

    The predictor needs at least 3 completed trials with a finite record at the epoch;
    with fewer, rules 1-3 alone apply. After each call, ``last_reason`` holds the one-line
    reason of the decision when it pruned and ``None`` otherwise; the objective stores it in
    the ``prune_reason`` user attribute. With ``study.optimize(n_jobs > 1)`` threads share
    the pruner: read ``reason_for(trial.number)`` instead.

    Args:
        n_startup_trials: Completed trials needed before rules 5 and 6 apply.
        n_warmup_steps: First epoch (1-based step) at which rules 3 and 5 apply; rule 6
            applies before it.
        n_steps: The trials' epoch budget; rules 5 and 6 apply up to epoch ``n_steps // 2``.
            ``None``: no such limit.
        collapse_flip_rate: Flip rate, in (0, 1], at or above which the perturbation counts
            as collapsed.
        inert_loss_gap: Relative loss gap, in [0, 1), below which a SAM-family perturbation
            counts as inert; 0 disables rule 3.
        top_k: How many of the best completed configurations the search confirms.
        min_probability: Estimated chance, in (0, 1], of finishing at or above the bar
            below which a trial is pruned.
        ridge_alpha: Ridge penalty on the standardized features; must be positive.
        hopeless_in_warmup: Whether rule 6 prunes hopeless trials before ``n_warmup_steps``;
            ``False`` keeps every trial through the warm-up, as Optuna's pruners do.
        val_size: Validation examples; with it, the bar of rule 5 is lowered by
            ``val_noise_z`` binomial standard errors ``sqrt(bar (1 - bar) / val_size)`` when
            it lies in (0, 1). That is an accuracy's standard error: for balanced accuracy,
            macro F1 or worst-class recall it is an approximation on the small side, and a
            cost's utility (negative) gets no margin.
        val_noise_z: Standard errors the bar is lowered by (see ``val_size``).
        value_name: What the reported value is called in the reasons (``val_acc``).
    """

    def __init__(
        self,
        n_startup_trials: int = 3,
        n_warmup_steps: int = 2,
        n_steps: int | None = None,
        collapse_flip_rate: float = 0.5,
        inert_loss_gap: float = 0.01,
        top_k: int = 2,
        min_probability: float = 0.5,
        ridge_alpha: float = 1.0,
        hopeless_in_warmup: bool = True,
        val_size: int | None = None,
        val_noise_z: float = 1.0,
        value_name: str = "val_acc",
    ) -> None:
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials cannot be negative but got {n_startup_trials=}.")
        if n_warmup_steps < 0:
            raise ValueError(f"n_warmup_steps cannot be negative but got {n_warmup_steps=}.")
        if n_steps is not None and n_steps < 1:
            raise ValueError(f"n_steps must be at least 1 but got {n_steps=}.")
        if not 0.0 < collapse_flip_rate <= 1.0:
            raise ValueError(f"collapse_flip_rate must be in (0, 1] but got {collapse_flip_rate=}.")
        if not 0.0 <= inert_loss_gap < 1.0:
            raise ValueError(f"inert_loss_gap must be in [0, 1) but got {inert_loss_gap=}.")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1 but got {top_k=}.")
        if not 0.0 < min_probability <= 1.0:
            raise ValueError(f"min_probability must be in (0, 1] but got {min_probability=}.")
        if val_size is not None and val_size < 1:
            raise ValueError(f"val_size must be at least 1 but got {val_size=}.")
        if not val_noise_z >= 0.0:
            raise ValueError(f"val_noise_z must be >= 0 but got {val_noise_z=}.")
        if not ridge_alpha > 0.0:
            raise ValueError(f"ridge_alpha must be positive but got {ridge_alpha=}.")
        self._n_startup_trials = n_startup_trials
        self._n_warmup_steps = n_warmup_steps
        self._n_steps = n_steps
        self._collapse_flip_rate = collapse_flip_rate
        self._inert_loss_gap = inert_loss_gap
        self._top_k = top_k
        self._min_probability = min_probability
        self._ridge_alpha = ridge_alpha
        self._hopeless_in_warmup = hopeless_in_warmup
        self._val_size = val_size
        self._val_noise_z = val_noise_z
        self._value_name = value_name
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
            found = ", ".join(f"{k}={_get(latest, k, 0.0)}" for k in bad) or f"{self._value_name}={reported}"
            return self._pruned(trial, f"diverged: {found} at epoch {step}")
        sam = not _is_baseline(trial)
        flip = _get(latest, "flip_rate", 0.0)
        if sam and step >= 2 and flip >= self._collapse_flip_rate:
            return self._pruned(
                trial, f"collapsed perturbation: flip rate {flip:.3f} at epoch {step}"
            )
        if (sam and _aims_at_loss(trial) and step == max(2, self._n_warmup_steps)
                and self._inert_loss_gap > 0.0):
            gap, loss = _get(latest, "loss_gap", math.nan), _get(latest, "train_loss", math.nan)
            if loss > 0.0 and gap / loss < self._inert_loss_gap:  # False when either is NaN
                return self._pruned(
                    trial,
                    f"inert perturbation: loss gap {gap:.2g} is {_percent_below(gap / loss)} of "
                    f"the training loss {loss:.3g} (< {100 * self._inert_loss_gap:g}%) at epoch "
                    f"{step}",
                )
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        warmup = step < self._n_warmup_steps
        if len(completed) < self._n_startup_trials or (warmup and not self._hopeless_in_warmup):
            return False
        if sam and sum(not _is_baseline(t) for t in completed) < self._n_startup_trials:
            return False  # the predictor has not yet seen how SAM-family trials end
        if self._n_steps is not None and step > self._n_steps // 2:
            return False
        p = self._predict(completed, trial, step)
        if p is None or p.probability >= self._min_probability:
            return False
        if warmup and p.probability > p.floor:
            return False
        chance = f"P(final {self._value_name} >= {p.bar:.3f}) = {p.probability:.2f}"
        why = (f"{p.bar:.3f} is the bar to be confirmed; predicted {p.predicted:.3f} from "
               f"{p.n_completed} completed")
        if warmup:
            return self._pruned(
                trial, f"hopeless in the warm-up: {chance}, its floor, at epoch {step} ({why})"
            )
        return self._pruned(
            trial, f"unlikely to be confirmed: {chance} < {self._min_probability} at epoch {step} "
                   f"({why})"
        )

    def predict(self, study: optuna.study.Study, trial: FrozenTrial) -> Prediction | None:
        """The predictor's view of ``trial`` at its last step, or ``None`` when too few
        completed trials (or a missing record) allow a fit."""
        if trial.last_step is None:
            return None
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return self._predict(completed, trial, trial.last_step)

    def _predict(
        self, completed: Sequence[FrozenTrial], trial: FrozenTrial, step: int
    ) -> Prediction | None:
        x_now = _features(trial, step)
        if x_now is None:
            return None
        rows = [(x, t.value) for t in completed if (x := _features(t, step)) is not None]
        rows = [(x, float(y)) for x, y in rows if y is not None and math.isfinite(y)]
        if len(rows) < _MIN_FIT_ROWS:
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
        mean = x.mean(axis=0)[keep]
        z = np.hstack([np.ones((len(y), 1)), (x[:, keep] - mean) / std[keep]])
        penalty = self._ridge_alpha * np.eye(z.shape[1])
        penalty[0, 0] = 0.0  # the intercept is not shrunk
        inverse = np.linalg.inv(z.T @ z + penalty)
        coef = inverse @ z.T @ y
        leverage = np.einsum("ij,jk,ik->i", z, inverse, z)
        loo = (y - z @ coef) / np.clip(1.0 - leverage, 1e-9, None)  # leave-one-out residuals
        seen = x[:, keep]
        clipped = np.clip(x_now[keep], seen.min(axis=0), seen.max(axis=0))
        x_clipped = np.where(_UNBOUNDED[keep], clipped, x_now[keep])
        predicted = float(np.concatenate([[1.0], (x_clipped - mean) / std[keep]]) @ coef)
        bar = self._bar(completed, baseline=x_now[-1] == 1.0)
        if self._val_size is not None and 0.0 < bar < 1.0:
            # the completed trials' finals are measured on val_size examples: a trial within
            # val_noise_z standard errors of the bar may be as good as the trial that set it
            bar -= self._val_noise_z * math.sqrt(bar * (1.0 - bar) / self._val_size)
        hits = int(np.sum(predicted + loo >= bar))
        return Prediction(predicted, bar, (hits + 1) / (len(y) + 1), len(y))

    def _bar(self, completed: Sequence[FrozenTrial], *, baseline: bool) -> float:
        """For a SAM-family trial, the top_k-th best completed SAM-family final value (the
        search confirms top_k SAM-family configurations besides the baseline); for a baseline
        trial, the top_k-th best completed final, no higher than the best completed
        baseline's."""
        if not baseline:
            sam = sorted((float(t.value) for t in completed
                          if _finite(t.value) and not _is_baseline(t)), reverse=True)
            if sam:
                return sam[min(self._top_k, len(sam)) - 1]
        finals = sorted((float(t.value) for t in completed if _finite(t.value)), reverse=True)
        bar = finals[min(self._top_k, len(finals)) - 1]
        if baseline:
            best = max((float(t.value) for t in completed if _finite(t.value) and _is_baseline(t)),
                       default=bar)
            bar = min(bar, best)
        return bar

    def _pruned(self, trial: FrozenTrial, reason: str) -> bool:
        self.last_reason = reason
        self._reasons[trial.number] = reason
        return True


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


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
    if trial.user_attrs.get("stage") == "baseline":  # the staged search's baseline trials
        return True
    variant = trial.params.get("variant")
    if variant is not None:
        return variant == "sgd"
    history = _history(trial)
    return not history or "flip_rate" not in history[-1]


def _aims_at_loss(trial: FrozenTrial) -> bool:
    """Whether the trial's perturbation is meant to raise the loss (loss-ascent or random
    directions). OBF-family directions aim at output biases: their loss gap is small by design,
    so a small gap says nothing about them."""
    variant = trial.params.get("variant")
    try:
        return get_variant(variant).direction != "obf"
    except ConfigError:  # an unknown or missing variant: judge it as SAM
        return True


def _features(trial: FrozenTrial, step: int) -> np.ndarray | None:
    """The feature vector of ``trial`` at epoch ``step``, or None if missing or non-finite."""
    record = next((r for r in _history(trial) if r.get("epoch") == step), None)
    if record is None:
        return None
    baseline = _is_baseline(trial)
    values = [_get(record, "val_acc" if k == "val_metric" and k not in record else k, math.nan)
              for k in _RECORD_FEATURES]
    values += [0.0 if baseline else _get(record, k, math.nan) for k in _PERTURBED_FEATURES]
    values.append(1.0 if baseline else 0.0)
    return np.array(values) if all(math.isfinite(v) for v in values) else None


def _percent_below(share: float) -> str:
    """``share`` as a percentage with two decimals, rounded down, so that a share below a
    threshold never prints as the threshold itself.

    >>> _percent_below(0.009996)
    '0.99%'
    """
    return f"{math.floor(share * 1e4) / 1e2:.2f}%"
