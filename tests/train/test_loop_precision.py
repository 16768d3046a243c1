"""``TrainConfig(bf16=True)`` runs the training loop's forward passes (both of SAM's) and its
evaluation in bfloat16; without it, in float32. Observed with a forward hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samtune import SAMConfig
from samtune.data import from_arrays
from samtune.train import TrainConfig, train


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    return from_arrays((x, y), seed=0)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("variant, m", [("sgd", None), ("sam", None), ("sam", 4)])
def test_forward_passes_run_in_the_requested_precision(bf16, variant, m):
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    seen = {"train": [], "eval": []}
    model[0].register_forward_hook(
        lambda mod, inp, out: seen["train" if torch.is_grad_enabled() else "eval"].append(out.dtype))
    result = train(model, _data(), SAMConfig(variant=variant, m=m, rho=0.0 if variant == "sgd" else 0.05),
                   TrainConfig(epochs=2, batch_size=16, bf16=bf16))
    want = torch.bfloat16 if bf16 else torch.float32
    passes = (1 if variant == "sgd" else 2) * result.steps  # at least: vectorized paths batch them
    assert seen["train"].count(want) >= (passes if m is None else result.steps)
    # the vectorized path measures its activations once per shape with a plain float32 forward
    # (a probe that trains nothing); every other training forward runs in the requested dtype
    assert len(seen["train"]) - seen["train"].count(want) <= (1 if bf16 and m else 0)
    assert seen["eval"] and set(seen["eval"]) == {want}  # validation
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
