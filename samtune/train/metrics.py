"""Per-step and per-epoch metrics of what SAM's perturbation does to predictions.

SAM evaluates each batch twice: a clean pass at the weights ``w`` (logits ``z_c``) and a
perturbed pass at ``w + e`` (logits ``z_p``). :func:`step_metrics` compares the two:

* ``flip_rate``: fraction of the batch correct at ``w`` and wrong at ``w + e``
  ("perturbed forgetting events");
* ``loss_gap``: ``L(w + e) - L(w)``, mean cross-entropy perturbed minus clean;
* ``p_drop``: mean over examples of ``softmax(z_c)[y] - softmax(z_p)[y]``;
* ``bias_clean`` / ``bias_perturbed``: ``KL(prior || mean_pred)``, the divergence of the
  batch-mean predicted distribution from the label prior, at ``w`` and at ``w + e``.

:class:`EpochAggregator` averages these over an epoch; :class:`ForgettingTracker` counts
example forgetting between presentations (Toneva et al., 2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samtune.errors import ConfigError
from samtune.train._forgetting import ForgettingTracker

__all__ = ["EpochAggregator", "ForgettingTracker", "StepMetrics", "step_metrics"]

EPS = 1e-8
"""Probabilities are clipped to at least this inside logarithms of the output-bias KL."""


@dataclass(frozen=True)
class StepMetrics:
    """One training step's metrics as Python floats.

    The perturbed-pass fields are ``None`` when the step had no perturbed pass (e.g. SGD).
    """

    loss: float  # mean cross-entropy at w (clean pass)
    acc: float  # fraction of the batch classified correctly at w
    n: int  # number of examples in the batch (the weight in epoch means)
    flip_rate: float | None  # fraction correct at w and wrong at w+e; None without a perturbed pass
    loss_gap: float | None  # L(w+e) - L(w); None without a perturbed pass
    p_drop: float | None  # mean softmax(z_c)[y] - softmax(z_p)[y]; None without a perturbed pass
    bias_clean: float  # KL(prior || batch-mean prediction) at w
    bias_perturbed: float | None  # the same at w+e; None without a perturbed pass

    @property
    def has_perturbed(self) -> bool:
        """Whether this step had a perturbed pass."""
        return self.flip_rate is not None


def _mean_loss(loss: torch.Tensor) -> torch.Tensor:
    """A precomputed loss as a detached float32 scalar (the mean of a per-example loss)."""
    loss = loss.detach().float()
    return loss.mean() if loss.numel() != 1 else loss.reshape(())


def _label_prior(
    prior: torch.Tensor | Sequence[float] | None, targets: torch.Tensor, k: int
) -> torch.Tensor:
    """The label prior on the targets' device: given (normalised) or the batch frequencies."""
    device = targets.device
    if prior is None:
        counts = torch.zeros(k, dtype=torch.float32, device=device)
        counts.scatter_add_(0, targets, torch.ones_like(targets, dtype=torch.float32))
        return counts / targets.numel()
    p = torch.as_tensor(prior, dtype=torch.float32).detach()
    if p.shape != (k,):
        raise ConfigError(
            f"the label prior has shape {tuple(p.shape)} but there are {k} classes; "
            f"give one non-negative frequency per class"
        )
    if p.device.type == "cpu" and (
        not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or float(p.sum()) <= 0
    ):
        raise ConfigError(
            "the label prior must be finite, non-negative and not all zero; "
            "give one frequency per class"
        )
    p = p.to(device, non_blocking=True)
    return p / p.sum()


def step_metrics(
    clean_logits: torch.Tensor,
    targets: torch.Tensor,
    perturbed_logits: torch.Tensor | None = None,
    *,
    clean_loss: torch.Tensor | float | None = None,
    perturbed_loss: torch.Tensor | float | None = None,
    prior: torch.Tensor | Sequence[float] | None = None,
) -> StepMetrics:
    """Compute one step's :class:`StepMetrics` from the clean and (optional) perturbed logits.

    ``clean_logits`` and ``perturbed_logits`` are ``(N, K)`` logits of the same examples at
    ``w`` and ``w + e``; ``targets`` are their ``(N,)`` int64 class indices. ``clean_loss``
    and ``perturbed_loss`` may pass losses already computed by the training step (a scalar,
    a per-example tensor that is averaged, or a float); otherwise the mean cross-entropy of
    the logits is used. ``prior`` is the label distribution for the output bias, one value
    per class (normalised here); by default the class frequencies of ``targets``.

    Runs under ``torch.no_grad`` on detached tensors on their own device and reads the
    results back with a single device-to-host transfer.
    """
    with torch.no_grad():
        z_c = clean_logits.detach()
        if z_c.ndim != 2:
            raise ValueError(f"clean_logits must have shape (N, K), got {tuple(z_c.shape)}")
        n, k = z_c.shape
        if n == 0:
            raise ValueError("step_metrics needs a non-empty batch")
        device = z_c.device
        y = targets.detach().to(device=device, dtype=torch.int64)
        if y.shape != (n,):
            raise ValueError(f"targets must have shape ({n},), got {tuple(targets.shape)}")
        perturbed = perturbed_logits is not None
        if perturbed:
            z_p = perturbed_logits.detach()
            if z_p.shape != (n, k):
                raise ValueError(
                    f"perturbed_logits must have the clean logits' shape {(n, k)}, "
                    f"got {tuple(z_p.shape)}"
                )
            # Both passes go through each kernel together: (P, N, K) with P = 2.
            z = torch.stack([z_c, z_p.to(device=device, dtype=z_c.dtype)]).float()
        else:
            z = z_c.float().unsqueeze(0)
        passes = z.shape[0]
        label_prior = _label_prior(prior, y, k)

        logp = F.log_softmax(z, dim=2)
        logp_y = logp.gather(2, y.view(1, n, 1).expand(passes, n, 1)).squeeze(2)  # (P, N)
        correct = z.argmax(dim=2) == y  # (P, N)
        mean_pred = logp.exp().mean(dim=1)  # (P, K)
        kl = torch.xlogy(label_prior, label_prior) - torch.xlogy(
            label_prior, mean_pred.clamp_min(EPS)
        )
        # One flat vector of device scalars, read back with one transfer:
        # [loss per pass, acc per pass, bias per pass, (flip, p_drop), (given losses)].
        parts = [-logp_y.mean(dim=1), correct.float().mean(dim=1), kl.sum(dim=1)]
        if perturbed:
            p_y = logp_y.exp()
            parts.append((correct[0] & ~correct[1]).float().mean().view(1))
            parts.append((p_y[0] - p_y[1]).mean().view(1))
        # Given losses: a tensor one is read back with the rest, a float one used as is.
        losses = [clean_loss, perturbed_loss if perturbed else None]
        parts += [_mean_loss(t).to(device).view(1) for t in losses if isinstance(t, torch.Tensor)]
        vals = torch.cat(parts).tolist()

        loss, acc, bias = vals[:passes], vals[passes : 2 * passes], vals[2 * passes : 3 * passes]
        rest = iter(vals[3 * passes :])
        flip, p_drop = (next(rest), next(rest)) if perturbed else (None, None)
        for i, given in enumerate(losses):
            if isinstance(given, torch.Tensor):
                value = next(rest)
            elif given is not None:
                value = float(given)
            else:
                continue
            loss[i] = value
        return StepMetrics(
            loss=loss[0],
            acc=acc[0],
            n=n,
            flip_rate=flip,
            loss_gap=loss[1] - loss[0] if perturbed else None,
            p_drop=p_drop,
            bias_clean=bias[0],
            bias_perturbed=bias[1] if perturbed else None,
        )


_KEYS = (
    ("train_loss", "loss"),
    ("train_acc", "acc"),
    ("flip_rate", "flip_rate"),
    ("loss_gap", "loss_gap"),
    ("p_drop", "p_drop"),
    ("bias_clean", "bias_clean"),
    ("bias_perturbed", "bias_perturbed"),
)
"""(result key, StepMetrics field) pairs, in the order :meth:`EpochAggregator.result` lists them."""


class EpochAggregator:
    """Accumulates StepMetrics over an epoch into example-weighted means.

    Each key is averaged over the steps that have a value for it, weighted by ``n``: the
    perturbed-pass keys (``flip_rate``, ``loss_gap``, ``p_drop``, ``bias_perturbed``) over
    the steps that had a perturbed pass, and omitted from :meth:`result` when none had one.
    """

    def __init__(self) -> None:
        """Start empty."""
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self._sums: dict[str, float] = {}
        self._weights: dict[str, int] = {}

    def add(self, m: StepMetrics) -> None:
        """Add one step's metrics, weighted by its number of examples ``m.n``."""
        for key, field in _KEYS:
            value = getattr(m, field)
            if value is not None:
                self._sums[key] = self._sums.get(key, 0.0) + value * m.n
                self._weights[key] = self._weights.get(key, 0) + m.n

    @property
    def n(self) -> int:
        """Number of examples added (summed over steps)."""
        return self._weights.get("train_loss", 0)

    def result(self) -> dict[str, float]:
        """Return the example-weighted means of the epoch so far.

        Always ``train_loss``, ``train_acc``, ``bias_clean``; ``flip_rate``, ``loss_gap``,
        ``p_drop``, ``bias_perturbed`` only when some step had a perturbed pass. Empty when
        nothing was added.
        """
        return {
            key: self._sums[key] / self._weights[key]
            for key, _ in _KEYS
            if self._weights.get(key, 0) > 0
        }
