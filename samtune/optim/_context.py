"""``PathContext``: what an m-sharpness path needs from the optimizer, and nothing more.

The variant's spec and hyperparameters, the perturbed parameters and each one's rho (its param
group's, this step), the memory bound of stacked micro-batch tensors, randsam's generator, and
a cache the optimizer keeps for its paths (static model checks, probes, the loop's buffers).
The maths every path shares (the perturbation and the final gradient of a variant) are methods
here, so a path never reaches into the optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from samtune.optim._perturb import gsam_gradient, perturbation
from samtune.optim._variants import VariantSpec


@dataclass
class PathContext:
    spec: VariantSpec
    variant_kwargs: dict[str, Any]
    params: list[torch.nn.Parameter]  # the perturbed parameters, in the optimizer's order
    rhos: list[float]  # each parameter's rho this step
    memory_mb: float  # bound of one batched call's stacked micro-batch tensors
    generator: torch.Generator | None = None  # randsam's noise
    cache: dict[str, Any] = field(default_factory=dict)  # kept by the optimizer between steps

    def obf_kwargs(self) -> dict[str, Any]:
        return {k: self.variant_kwargs[k] for k in ("gamma", "C", "prob")}

    def perturbation(self, direction: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                     batched: bool = True) -> list[torch.Tensor]:
        """e from the ascent direction: rho d / ||d||, or ASAM's rho T^2 d / ||T d||."""
        return perturbation(
            direction, params, self.rhos, batched=batched,
            adaptive=self.spec.adaptive, eta=self.variant_kwargs.get("eta", 0.01),
        )

    def final(self, direction: Sequence[torch.Tensor], g_p: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The gradient handed to the base optimizer (GSAM's decomposition uses the direction)."""
        if self.spec.gsam:
            return gsam_gradient(direction, g_p, self.variant_kwargs["alpha"])
        return list(g_p)

    def final_one(self, direction, g_p) -> list[torch.Tensor]:
        """:meth:`final` for one batch (parameter-shaped tensors, no micro-batch axis)."""
        if not self.spec.gsam:
            return list(g_p)
        return [f[0] for f in self.final([d.unsqueeze(0) for d in direction],
                                         [g.unsqueeze(0) for g in g_p])]

    def clear_grads(self) -> None:
        """``zero_grad(set_to_none=True)`` for the perturbed parameters, without its overhead."""
        for p in self.params:
            p.grad = None


def as_context(owner: Any) -> PathContext:
    """A path's context from a ``PathContext`` or from an optimizer (``path_context()``)."""
    return owner if isinstance(owner, PathContext) else owner.path_context()
