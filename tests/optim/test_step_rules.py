"""train_step's bookkeeping against plain PyTorch: accumulation, a loss scaler, the baseline's
output, the optimizer's state, and how a failing path is set aside.

From a mutation run of ``samtune/optim/_sam.py`` (benchmarks/RESULTS.md): each test holds a rule
that a one-line change of that file broke without any other optimizer test noticing.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import warnings

import pytest
import torch
import torch.nn.functional as F

from samtune import SAMConfig, build_optimizer
from samtune.errors import ConfigError
from tests.optim.conftest import mlp, overflowing_loss

SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


def _data(batch: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 6, generator=g), torch.randint(0, 3, (batch,), generator=g)


def _plain_sgd_steps(model, batches):
    """torch.optim.SGD on the whole of each batch: the reference for the baseline."""
    opt = torch.optim.SGD(model.parameters(), **SGD)
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def _close(a, b, atol=1e-6):
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=atol)


def test_the_baseline_accumulated_over_two_halves_is_the_full_batch_step():
    x, y = _data(32)
    ref, model = mlp(), mlp()
    _plain_sgd_steps(ref, [(x, y)] * 2)
    opt = build_optimizer(model, SAMConfig(variant="sgd", base_kwargs=SGD))
    for _ in range(2):
        opt.train_step(model, x[:16], y[:16], update=False)
        assert all(p.grad is None for p in model.parameters())  # nothing stepped yet
        opt.train_step(model, x[16:], y[16:], update=True)
    _close(ref, model)


def test_the_baselines_output_is_the_clean_loss_and_logits_before_the_update():
    x, y = _data(32)
    model = mlp()
    before = copy.deepcopy(model)
    out = build_optimizer(model, SAMConfig(variant="sgd", base_kwargs=SGD)).train_step(model, x, y)
    logits = before(x)
    torch.testing.assert_close(out.outputs, logits)
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, y))
    assert out.perturbed_loss is None and out.perturbed_outputs is None
    assert not out.loss.requires_grad and not out.outputs.requires_grad


@pytest.mark.parametrize("variant", ["sgd", "sam"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_a_loss_scaler_leaves_the_steps_as_they_are_without_one(variant, accumulate):
    """fp32 with a GradScaler (nothing overflows): the scaled passes are unscaled exactly, on one
    batch and over an accumulated update."""
    x, y = _data(32)
    cfg = SAMConfig(variant=variant, rho=0.05, base_kwargs=SGD)
    plain, scaled = mlp(), mlp()
    opts = {id(plain): build_optimizer(plain, cfg), id(scaled): build_optimizer(scaled, cfg)}
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for _ in range(3):
        for model, kw in ((plain, {}), (scaled, {"scaler": scaler})):
            opt = opts[id(model)]
            if accumulate:
                opt.train_step(model, x[:16], y[:16], update=False, **kw)
                opt.train_step(model, x[16:], y[16:], **kw)
            else:
                opt.train_step(model, x, y, **kw)
    assert scaler.get_scale() == 1024.0  # no pass overflowed, so no step was skipped
    _close(plain, scaled, atol=1e-5)


@pytest.mark.parametrize("variant", ["sgd", "sam"])
def test_an_overflow_in_one_chunk_skips_the_whole_accumulated_update(variant):
    """The scaler sees the accumulated gradient: an inf in the second chunk's pass leaves the
    weights as they were and backs the scale off, as one overflowing step does."""
    x, y = _data(32)
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(model, SAMConfig(variant=variant, rho=0.05, base_kwargs=SGD), msharp="loop")
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    opt.train_step(model, x[:16], y[:16], update=False, scaler=scaler)
    opt.train_step(model, x[16:], y[16:], overflowing_loss(1), scaler=scaler)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), before))
    assert scaler.get_scale() == 512.0


def test_a_checkpoint_without_the_step_clock_loads_as_torchs_own_does():
    model = mlp()
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.05, base_kwargs=SGD))
    opt.train_step(model, *_data(32))
    plain = {k: v for k, v in opt.state_dict().items() if k != "sam_step"}  # torch's two keys
    resumed = build_optimizer(mlp(), SAMConfig(variant="sam", rho=0.05, base_kwargs=SGD))
    resumed.load_state_dict(plain)
    assert resumed.sam_step == 0 and len(resumed.base_optimizer.state) == 4


def test_a_plain_step_after_train_step_is_refused_for_a_sam_variant():
    x, y = _data(32)
    model = mlp()
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.05, base_kwargs=SGD))
    opt.train_step(model, x, y)
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(ConfigError, match="skip the perturbation"):
        opt.step()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_checkpoint_of_the_optimizer_resumes_the_same_steps(schedule):
    """torch.save of ``state_dict()``, then ``load_state_dict`` into a fresh optimizer: the
    base optimizer's momentum and the schedules' clock come back, and the next steps are the
    ones the original takes."""
    x, y = _data(32)
    cfg = SAMConfig(variant="sam", rho=0.05, schedule=schedule, base_kwargs=SGD)
    model = mlp()
    opt = build_optimizer(model, cfg, total_steps=10)
    for _ in range(3):
        opt.train_step(model, x, y)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    twin = mlp(seed=1)
    twin.load_state_dict(saved["model"])
    resumed = build_optimizer(twin, cfg, total_steps=10)
    resumed.load_state_dict(saved["opt"])
    assert resumed.sam_step == 3 and len(resumed.base_optimizer.state) == 4
    for _ in range(3):
        opt.train_step(model, x, y)
        resumed.train_step(twin, x, y)
        assert resumed.param_groups[0]["rho"] == opt.param_groups[0]["rho"]
    _close(model, twin, atol=0)


def test_an_unknown_msharp_names_the_choices():
    with pytest.raises(ConfigError, match="msharp must be one of .*loop.*but got msharp='fastest'"):
        build_optimizer(mlp(), SAMConfig(variant="sam", m=8), msharp="fastest")


def test_a_failed_path_is_not_tried_again_for_another_micro_batch_count(monkeypatch):
    from samtune.optim import _paths

    calls = []

    def broken(*args):
        calls.append(args[5])  # k
        raise RuntimeError("boom")

    fused = _paths.get_path("fused")
    monkeypatch.setitem(_paths._REGISTRY, "fused", dataclasses.replace(fused, run=broken))
    model = mlp()
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.05, m=8, base_kwargs=SGD))
    with pytest.warns(RuntimeWarning, match="fused m-sharpness failed") as caught:
        for _ in range(6):
            opt.train_step(model, *_data(32))  # k = 4
    assert [w.filename for w in caught] == [__file__]  # pointed at the caller's train_step
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(6):
            opt.train_step(model, *_data(64))  # k = 8: the candidates again, fused left out
    assert calls == [4]


@pytest.mark.parametrize("m,msharp", [(8, "loop"), (None, "auto")])
def test_an_error_of_the_loop_itself_propagates_without_a_fallback_warning(m, msharp):
    def failing(out, target):
        raise RuntimeError("the user's loss failed")

    model = mlp()
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.05, m=m, base_kwargs=SGD),
                          msharp=msharp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="the user's loss failed"):
            opt.train_step(model, *_data(32), failing)
