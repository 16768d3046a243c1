"""``EpochAggregator``: a training epoch's step metrics, buffered and computed in batches.

Each step's tensors are kept as they come (:meth:`EpochAggregator.add_step`, no tensor
operation) and computed together by :func:`samtune.train.metrics._batch_metrics` once enough
steps are buffered, so the metrics cost a few operations per step instead of dozens.
"""

from __future__ import annotations

import torch

from samtune.train._forgetting import ForgettingTracker
from samtune.train.metrics import StepMetrics, _batch_metrics, _check_step, _Step

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
    """Accumulates step metrics over an epoch into example-weighted means.

    Each key is averaged over the steps that have a value for it, weighted by ``n``: the
    perturbed-pass keys (``flip_rate``, ``loss_gap``, ``p_drop``, ``bias_perturbed``) over
    the steps that had a perturbed pass, and omitted from :meth:`result` when none had one.

    Steps come in as :class:`StepMetrics` (:meth:`add`) or as the step's tensors
    (:meth:`add_step`), which are only kept (no tensor operation) until :meth:`flush`
    computes the buffered steps together and adds them in order; the sums come out exactly
    as from :func:`step_metrics` and :meth:`add` step by step. The buffer flushes by itself
    when it holds ``max_steps`` steps or ``max_logits`` logit values (bounding its memory),
    when a step of another shape comes, and before :meth:`add`, :meth:`result`, :attr:`n`
    and :meth:`reset`. Buffered tensors must not be modified in place before then.

    With a ``tracker``, :meth:`add_step` takes each step's dataset ``indices`` and the flush
    feeds the tracker, in step order, whether the clean pass classified each example
    correctly: read the tracker after :meth:`result` (or :meth:`flush`).
    """

    def __init__(
        self,
        tracker: ForgettingTracker | None = None,
        *,
        max_steps: int = 32,  # steps buffered before a flush (~100 ops): ~3 ops per step
        max_logits: int = 2**21,  # logit values buffered (both passes): 8 MB in float32
    ) -> None:
        """Start empty; feed ``tracker`` (when given) from the buffered steps."""
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, but got {max_steps=}.")
        if max_logits < 1:
            raise ValueError(f"max_logits must be at least 1, but got {max_logits=}.")
        self._tracker = tracker
        self._max_steps = max_steps
        self._max_logits = max_logits
        self._buffer: list[_Step] = []
        self._indices: list[torch.Tensor] = []
        self._buffered_logits = 0
        self._sums: dict[str, float] = {}
        self._weights: dict[str, int] = {}

    def reset(self) -> None:
        """Forget the metrics added so far (buffered steps still reach the tracker)."""
        self.flush()
        self._sums = {}
        self._weights = {}

    def add_step(
        self,
        clean_logits: torch.Tensor,
        targets: torch.Tensor,
        perturbed_logits: torch.Tensor | None = None,
        *,
        clean_loss: torch.Tensor | float | None = None,
        perturbed_loss: torch.Tensor | float | None = None,
        indices: torch.Tensor | None = None,
    ) -> None:
        """Add one step from its tensors, as :func:`step_metrics` takes them (the label
        prior is each batch's class frequencies), plus the batch's dataset ``indices`` when
        the aggregator feeds a tracker. Checks shapes now; computes at the next flush.
        """
        step = _check_step(clean_logits, targets, perturbed_logits, clean_loss, perturbed_loss)
        if indices is None and self._tracker is not None:
            raise ValueError(
                "this aggregator feeds a ForgettingTracker: give the batch's dataset indices "
                "(indices=...)"
            )
        if indices is not None and self._tracker is None:
            raise ValueError(
                "indices were given but no ForgettingTracker to feed them to: create the "
                "aggregator as EpochAggregator(tracker), or leave indices out"
            )
        if indices is not None:
            if indices.shape != step.targets.shape:
                raise ValueError(
                    f"indices must have the targets' shape {tuple(step.targets.shape)}, "
                    f"got {tuple(indices.shape)}"
                )
            if indices.dtype.is_floating_point or indices.dtype == torch.bool:
                raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
            if indices.dtype != torch.int64 or indices.device != step.clean.device:
                indices = indices.to(device=step.clean.device, dtype=torch.int64)
        if self._buffer and not _same_shape(self._buffer[0], step):
            self.flush()
        self._buffer.append(step)
        if indices is not None:
            self._indices.append(indices)
        self._buffered_logits += step.clean.numel() * (1 if step.perturbed is None else 2)
        if len(self._buffer) >= self._max_steps or self._buffered_logits >= self._max_logits:
            self.flush()

    def flush(self) -> list[StepMetrics]:
        """Compute the buffered steps, add them, feed the tracker; return their metrics
        (those of the steps since the buffer last flushed, by itself or by a call)."""
        if not self._buffer:
            return []
        steps, indices = self._buffer, self._indices
        self._buffer, self._indices, self._buffered_logits = [], [], 0
        with torch.no_grad():
            metrics, correct = _batch_metrics(steps)
            if self._tracker is not None:
                self._tracker.update_steps(torch.stack(indices), correct)
        for m in metrics:
            self._accumulate(m)
        return metrics

    def add(self, m: StepMetrics) -> None:
        """Add one step's metrics, weighted by its number of examples ``m.n``."""
        self.flush()
        self._accumulate(m)

    def _accumulate(self, m: StepMetrics) -> None:
        for key, field in _KEYS:
            value = getattr(m, field)
            if value is not None:
                self._sums[key] = self._sums.get(key, 0.0) + value * m.n
                self._weights[key] = self._weights.get(key, 0) + m.n

    @property
    def n(self) -> int:
        """Number of examples added (summed over steps)."""
        self.flush()
        return self._weights.get("train_loss", 0)

    def result(self) -> dict[str, float]:
        """Return the example-weighted means of the epoch so far.

        Always ``train_loss``, ``train_acc``, ``bias_clean``; ``flip_rate``, ``loss_gap``,
        ``p_drop``, ``bias_perturbed`` only when some step had a perturbed pass. Empty when
        nothing was added.
        """
        self.flush()
        return {
            key: self._sums[key] / self._weights[key]
            for key, _ in _KEYS
            if self._weights.get(key, 0) > 0
        }


def _same_shape(a: _Step, b: _Step) -> bool:
    """Whether two steps can be computed in one batch."""
    return (
        a.clean.shape == b.clean.shape
        and a.clean.dtype == b.clean.dtype
        and a.clean.device == b.clean.device
        and (a.perturbed is None) == (b.perturbed is None)
    )
