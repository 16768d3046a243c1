"""Hooks into the training loop; each does nothing by default."""

from __future__ import annotations

from typing import Any


class Callback:
    """Override the hooks you need. Raising from a hook stops training (the search's pruner
    adapter raises ``optuna.TrialPruned`` from ``on_epoch_end``)."""

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """``info`` holds steps_per_epoch, total_steps, batch_size, device."""

    def on_step_end(self, step: int, metrics: Any) -> None:
        """After each optimizer step; ``metrics`` is that step's ``StepMetrics``.

        Only overridden hooks are called: without one, the loop computes the step metrics in
        batches of steps, and overriding this brings back one small computation per step.
        """

    def on_epoch_end(self, epoch: int, record: dict[str, float]) -> None:
        """After each epoch's evaluation; ``record`` is that epoch's history entry."""

    def on_train_end(self, result: Any) -> None:
        """After the last epoch (or divergence); ``result`` is the ``TrainResult``."""
