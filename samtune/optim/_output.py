"""``StepOutput``: what one training step returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StepOutput:
    """What ``train_step`` returns: detached tensors, no host synchronisation."""

    loss: torch.Tensor  # clean loss L(w), mean over the batch
    outputs: torch.Tensor  # clean logits at w, (B, K) in the batch's order
    perturbed_loss: torch.Tensor | None = None  # L(w + e); None when the step did not perturb
    perturbed_outputs: torch.Tensor | None = None  # logits at w + e; None likewise


def joined(a: StepOutput, b: StepOutput, n_a: int, n_b: int) -> StepOutput:
    """The output of a batch run as two parts of n_a and n_b examples."""
    def mean(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None or y is None else (x * n_a + y * n_b) / (n_a + n_b)

    def cat(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None or y is None else torch.cat([x, y])

    return StepOutput(mean(a.loss, b.loss), cat(a.outputs, b.outputs),
                      mean(a.perturbed_loss, b.perturbed_loss),
                      cat(a.perturbed_outputs, b.perturbed_outputs))


def concatenated(parts: list[StepOutput]) -> StepOutput:
    """The output of k equal micro-batches run one after the other."""
    return StepOutput(
        torch.stack([o.loss for o in parts]).mean(), torch.cat([o.outputs for o in parts]),
        torch.stack([o.perturbed_loss for o in parts]).mean(),
        torch.cat([o.perturbed_outputs for o in parts]),
    )
