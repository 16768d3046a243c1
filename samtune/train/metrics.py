"""Per-step and per-epoch metrics of what SAM's perturbation does to predictions.

SAM evaluates each batch twice: a clean pass at the weights ``w`` (logits ``z_c``) and a
perturbed pass at ``w + e`` (logits ``z_p``). :func:`step_metrics` compares the two:

* ``flip_rate``: fraction of the batch correct at ``w`` and wrong at ``w + e``
  ("perturbed forgetting events");
* ``loss_gap``: ``L(w + e) - L(w)``, mean cross-entropy perturbed minus clean;
* ``p_drop``: mean over examples of ``softmax(z_c)[y] - softmax(z_p)[y]``;
* ``bias_clean`` / ``bias_perturbed``: ``KL(prior || mean_pred)``, the divergence of the
  batch-mean predicted distribution from the label prior, at ``w`` and at ``w + e``.

:class:`EpochAggregator` (``_aggregator.py``) averages these over an epoch; :class:`ForgettingTracker` counts
example forgetting between presentations (Toneva et al., 2019). The training loop hands each
step's tensors to :meth:`EpochAggregator.add_step`, which only keeps them: on a small model
the ~30 tensor operations of one step's metrics cost more in dispatch than in arithmetic, so
the buffered steps are computed together, the same operations on a ``(steps, ...)`` batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from samtune.errors import ConfigError
from samtune.train._forgetting import ForgettingTracker

__all__ = ["ForgettingTracker", "StepMetrics", "step_metrics"]

EPS = 1e-8
"""Probabilities are clipped to at least this inside logarithms of the output-bias KL."""

Loss = torch.Tensor | float | None
"""A loss the training step computed already: a scalar or per-example tensor, or a float."""


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


def _stack_losses(losses: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Given loss tensors as one float32 vector on ``device`` (one op for scalar losses)."""
    if all(t.ndim == 0 and t.dtype == torch.float32 and t.device == device for t in losses):
        return torch.stack(losses)
    return torch.stack([_mean_loss(t).to(device) for t in losses])


def _label_prior(
    prior: torch.Tensor | Sequence[float] | None, targets: torch.Tensor, k: int
) -> torch.Tensor:
    """The label prior for ``(S, N)`` targets, ``(S, 1, K)`` on their device: given
    (normalised, shared by all steps) or each step's batch frequencies."""
    device = targets.device
    if prior is None:
        steps, n = targets.shape
        counts = torch.zeros(steps, k, dtype=torch.float32, device=device)
        counts.scatter_add_(1, targets, torch.ones_like(targets, dtype=torch.float32))
        return (counts / n).unsqueeze(1)
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
    return (p / p.sum()).view(1, 1, k)


class _Step(NamedTuple):
    """One step's inputs, checked: detached, targets int64 and everything on one device."""

    clean: torch.Tensor  # (N, K) logits at w
    targets: torch.Tensor  # (N,) int64
    perturbed: torch.Tensor | None  # (N, K) logits at w+e in the clean logits' dtype
    losses: tuple[Loss, Loss]  # given (clean, perturbed) losses; perturbed None without a pass


def _detached(t: Loss) -> Loss:
    """``t`` without its graph (a no-op, and no tensor op, unless it requires grad)."""
    return t.detach() if isinstance(t, torch.Tensor) and t.requires_grad else t


def _check_step(
    clean_logits: torch.Tensor,
    targets: torch.Tensor,
    perturbed_logits: torch.Tensor | None,
    clean_loss: Loss,
    perturbed_loss: Loss,
) -> _Step:
    """Check one step's inputs; converts (a tensor op) only what needs converting."""
    z_c = _detached(clean_logits)
    if z_c.ndim != 2:
        raise ValueError(f"clean_logits must have shape (N, K), got {tuple(z_c.shape)}")
    n, k = z_c.shape
    if n == 0:
        raise ValueError("step_metrics needs a non-empty batch")
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},), got {tuple(targets.shape)}")
    y = targets
    if y.device != z_c.device or y.dtype != torch.int64:
        y = y.to(device=z_c.device, dtype=torch.int64)
    z_p = _detached(perturbed_logits)
    if z_p is not None:
        if z_p.shape != (n, k):
            raise ValueError(
                f"perturbed_logits must have the clean logits' shape {(n, k)}, "
                f"got {tuple(z_p.shape)}"
            )
        if z_p.device != z_c.device or z_p.dtype != z_c.dtype:
            z_p = z_p.to(device=z_c.device, dtype=z_c.dtype)
    losses = (_detached(clean_loss), _detached(perturbed_loss) if z_p is not None else None)
    return _Step(z_c, y, z_p, losses)


def _batch_metrics(
    steps: Sequence[_Step], prior: torch.Tensor | Sequence[float] | None = None
) -> tuple[list[StepMetrics], torch.Tensor]:
    """The :class:`StepMetrics` of ``steps`` (same shapes, one device), computed together,
    and the ``(S, N)`` mask of their examples correct at ``w``.

    Every operation runs once on ``(S, P, N, K)`` logits (``P`` passes: clean, perturbed),
    and the results come back to the host with one transfer.
    """
    s = len(steps)
    n, k = steps[0].clean.shape
    perturbed = steps[0].perturbed is not None
    passes = 2 if perturbed else 1
    logits = [t for st in steps for t in ((st.clean, st.perturbed) if perturbed else (st.clean,))]
    z = torch.stack(logits).view(s, passes, n, k).float()
    y = torch.stack([st.targets for st in steps])  # (S, N)
    label_prior = _label_prior(prior, y, k)  # (S or 1, 1, K)

    logp = F.log_softmax(z, dim=3)
    logp_y = logp.gather(3, y.view(s, 1, n, 1).expand(s, passes, n, 1)).squeeze(3)  # (S, P, N)
    correct = z.argmax(dim=3) == y.unsqueeze(1)  # (S, P, N)
    mean_pred = logp.exp().mean(dim=2)  # (S, P, K)
    kl = torch.xlogy(label_prior, label_prior) - torch.xlogy(
        label_prior, mean_pred.clamp_min(EPS)
    )
    # Per step one row: [loss per pass, acc per pass, bias per pass, (flip, p_drop)].
    cols = [-logp_y.mean(dim=2), correct.float().mean(dim=2), kl.sum(dim=2)]
    if perturbed:
        p_y = logp_y.exp()
        cols.append((correct[:, 0] & ~correct[:, 1]).float().mean(dim=1, keepdim=True))
        cols.append((p_y[:, 0] - p_y[:, 1]).mean(dim=1, keepdim=True))
    # Given losses: the tensor ones are read back with the rest, the float ones used as is.
    given = [t for st in steps for t in st.losses if isinstance(t, torch.Tensor)]
    flat = [torch.cat(cols, dim=1).flatten()]
    if given:
        flat.append(_stack_losses(given, z.device))
    vals = torch.cat(flat).tolist()

    width = 3 * passes + 2 * perturbed
    given_vals = iter(vals[s * width :])
    out = []
    for i, st in enumerate(steps):
        row = vals[i * width : (i + 1) * width]
        loss, acc, bias = row[:passes], row[passes : 2 * passes], row[2 * passes : 3 * passes]
        for j, value in enumerate(st.losses):
            if isinstance(value, torch.Tensor):
                loss[j] = next(given_vals)
            elif value is not None:
                loss[j] = float(value)
        out.append(
            StepMetrics(
                loss=loss[0],
                acc=acc[0],
                n=n,
                flip_rate=row[3 * passes] if perturbed else None,
                loss_gap=loss[1] - loss[0] if perturbed else None,
                p_drop=row[3 * passes + 1] if perturbed else None,
                bias_clean=bias[0],
                bias_perturbed=bias[1] if perturbed else None,
            )
        )
    return out, correct[:, 0]


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
    results back with a single device-to-host transfer. In a training loop, prefer
    :meth:`EpochAggregator.add_step`, which computes many steps in the same operations.
    """
    with torch.no_grad():
        step = _check_step(clean_logits, targets, perturbed_logits, clean_loss, perturbed_loss)
        return _batch_metrics([step], prior)[0][0]
