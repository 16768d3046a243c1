from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def mlp(bn: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(6, 16)]
    if bn:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def tanh_net(*extra: nn.Module) -> nn.Module:
    """Linear(6, 8), ``extra`` modules, Tanh, Linear(8, 3), seeded: a net every path runs."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), *extra, nn.Tanh(), nn.Linear(8, 3))


def overflowing_loss(bad_call: int):
    """Cross-entropy whose ``bad_call``-th call (1 = the clean pass) is inf: an fp16 overflow."""
    calls = []

    def loss_fn(out, target):
        calls.append(1)
        loss = F.cross_entropy(out.float(), target)
        return loss * float("inf") if len(calls) == bad_call else loss

    return loss_fn


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 6, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    return x, y
