"""The reference loop path's own rules (from a mutation run of ``_msharp_loop.py``): its
gradients come back unscaled under loss scaling, and a parameter the loss does not reach has
a zero gradient, not an error."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samtune import SAMConfig, build_optimizer


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _loop(model, variant, x, y, k, scale):
    cfg = SAMConfig(variant=variant, rho=0.3, m=8, base_kwargs={"lr": 0.1})
    opt = build_optimizer(model, cfg)
    return opt._loop_pass(model, x, y, F.cross_entropy, k, nullcontext(), scale)


@pytest.mark.parametrize("variant", ["sam", "gsam", "obf"])
@pytest.mark.parametrize("k", [1, 4])
def test_a_scaled_loss_gives_the_unscaled_passes(variant, k):
    """Under a GradScaler the losses are scaled by ``scale`` and the gradients divided by it
    again: the final gradient equals the unscaled run's (gsam's, whose final gradient takes the
    ascent gradient's size, included). Scale 2: a rule that treats 2 as 1 fails too."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    model = _net()
    out1, final1 = _loop(model, variant, x, y, k, 1.0)
    out2, final2 = _loop(copy.deepcopy(model), variant, x, y, k, 2.0)
    for a, b in zip(final1, final2, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out2.perturbed_loss, out1.perturbed_loss)


def test_a_parameter_the_loss_does_not_reach_gets_a_zero_final_gradient():
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.unused = _net(), nn.Linear(2, 2)  # registered, never called

        def forward(self, x):
            return self.net(x)

    model = WithUnused()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    _, final = _loop(model, "sam", x, y, 2, 1.0)
    by_param = dict(zip((id(p) for p in model.parameters()), final, strict=True))
    assert torch.equal(by_param[id(model.unused.weight)], torch.zeros(2, 2))
    assert by_param[id(model.net[0].weight)].abs().sum() > 0
