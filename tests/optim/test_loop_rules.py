"""The reference loop path's own rules (from a mutation run of ``_msharp_loop.py``): a
parameter the loss does not reach has a zero gradient, not an error. Its loss scaling is
tested with every path's, in test_vmap_rules.py."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from samtune import SAMConfig, build_optimizer
from tests.optim.conftest import tanh_net as _net


def _loop(model, variant, x, y, k, scale):
    cfg = SAMConfig(variant=variant, rho=0.3, m=8, base_kwargs={"lr": 0.1})
    opt = build_optimizer(model, cfg)
    return opt._loop_pass(model, x, y, F.cross_entropy, k, nullcontext(), scale)


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
