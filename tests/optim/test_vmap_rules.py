"""Rules of the m-sharpness paths called directly, where the optimizer's fallback to the loop
would hide a failure (from mutation runs of ``_msharp.py``, the vmap path, and of
``_msharp_loop.py``): under loss scaling every path returns the unscaled passes, soft (per-class) targets keep their shape, a model
with dropout runs, and the vmap path says which models it cannot reproduce."""

from __future__ import annotations

import copy
import dataclasses
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samtune import SAMConfig, build_optimizer
from samtune.optim import _msharp
from samtune.optim._paths import get_path
from tests.optim.conftest import tanh_net as _net


def _data(n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _ctx(model, variant="sam"):
    cfg = SAMConfig(variant=variant, rho=0.3, m=8, base_kwargs={"lr": 0.1})
    return build_optimizer(model, cfg).path_context()


def _run(path, model, variant, x, y, k, scale, loss_fn=F.cross_entropy):
    return get_path(path).run(_ctx(model, variant), model, x, y, loss_fn, k, nullcontext(), scale)


@pytest.mark.parametrize("path", ["loop", "fused", "grouped", "vmap"])
@pytest.mark.parametrize("variant", ["sam", "gsam", "obf"])
@pytest.mark.parametrize("k", [1, 4])
def test_a_scaled_loss_gives_the_loops_unscaled_passes(path, variant, k):
    """Under a GradScaler the losses are scaled by ``scale`` and the gradients divided by it
    again: each path at scale 2 against the loop at scale 1 gives the same final gradient
    (gsam's, which takes the ascent gradient's size, included) and losses. Scale 2: a rule that
    treats 2 as 1 fails too."""
    x, y = _data()
    model = _net()
    ref_out, ref = _run("loop", copy.deepcopy(model), variant, x, y, k, 1.0)
    out, final = _run(path, model, variant, x, y, k, 2.0)
    tol = {"rtol": 1e-5, "atol": 1e-7} if path == "loop" else {"rtol": 1e-4, "atol": 1e-6}
    for a, b in zip(ref, final, strict=True):
        torch.testing.assert_close(b, a, **tol)
    torch.testing.assert_close(out.perturbed_loss, ref_out.perturbed_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, ref_out.loss, rtol=1e-5, atol=1e-6)


def _soft(out, y):
    return F.cross_entropy(out, y)  # y: (batch, classes) probabilities


def test_soft_targets_reach_the_vmap_paths_loss_with_their_class_axis():
    x, hard = _data()
    y = 0.8 * F.one_hot(hard, 3).float() + 0.2 / 3
    model = _net()
    ref_out, ref = _run("loop", copy.deepcopy(model), "sam", x, y, 4, 1.0, _soft)
    out, final = _run("vmap", model, "sam", x, y, 4, 1.0, _soft)
    for a, b in zip(ref, final, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.perturbed_loss, ref_out.perturbed_loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["sam", "randsam"])  # randsam's clean pass needs no gradient
def test_the_vmap_path_runs_a_model_with_dropout(variant):
    x, y = _data()
    model = _net(nn.Dropout(0.3))
    out, final = _run("vmap", model, variant, x, y, 4, 1.0)
    assert out.perturbed_outputs.shape == (32, 3)
    assert all(torch.isfinite(f).all() for f in final)


def test_the_vmap_path_refuses_foreign_parameters_cumulative_bn_and_bn_under_autocast():
    bn = _net(nn.BatchNorm1d(8))
    ctx = _ctx(bn)
    assert _msharp.supported(ctx, bn)  # BN with a momentum, no autocast: the default
    assert not _msharp.supported(ctx, bn, autocast=True)
    plain = _net()
    assert _msharp.supported(_ctx(plain), plain, autocast=True)  # no BN: autocast is fine
    cumulative = _net(nn.BatchNorm1d(8, momentum=None))
    assert not _msharp.supported(_ctx(cumulative), cumulative)
    other = _net()
    assert not _msharp.supported(ctx, other)  # the optimizer's parameters are not other's
    foreign = dataclasses.replace(ctx, params=[*ctx.params, nn.Parameter(torch.zeros(2))])
    assert not _msharp.supported(foreign, bn)  # one parameter outside the model is enough
    with pytest.raises(RuntimeError, match="not all parameters of this model"):
        x, y = _data()
        _msharp.vectorized_pass(foreign, bn, x, y, F.cross_entropy, 4, nullcontext(), 1.0)


def test_the_activation_probe_counts_what_autograd_saves_per_shape():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
    ctx = _ctx(model)
    # Linear saves its input (the weight is excluded), ReLU its output: float32 each
    assert _msharp.saved_activation_bytes(ctx, model, torch.randn(8, 6)) == 4 * (8 * 6 + 8 * 5)
    assert _msharp.saved_activation_bytes(ctx, model, torch.randn(2, 6)) == 4 * (2 * 6 + 2 * 5)
    assert _msharp.saved_activation_bytes(ctx, model, torch.randn(8, 6)) == 4 * (8 * 6 + 8 * 5)
