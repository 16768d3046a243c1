"""The grouped m-sharpness pass against the micro-batch loop, its check, and what it refuses."""

from __future__ import annotations

import copy
import warnings
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samtune import SAMConfig, build_optimizer, list_variants
from samtune.models import build_model
from samtune.optim import _msharp_loop
from samtune.optim._msharp_grouped import chunk_size, grouped_pass, pack, supported, unpack

VARIANTS = [v for v in list_variants() if v != "sgd"]


def cnn(seed: int = 0) -> nn.Module:
    """Conv with and without bias, BatchNorm, GroupNorm, pooling, a Linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.GELU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, bias=False), nn.BatchNorm2d(8),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)
    )


class Sequence(nn.Module):
    """Linear layers on (batch, length, features), then flattened: a custom forward."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Linear(4, 5), nn.Linear(8 * 5, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.embed(x)).flatten(1))


class Residual(nn.Module):
    """A ResNet-style block: a forward of its own, with an in-place addition."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x):
        out = self.bn(self.conv(x))
        out += x
        return F.relu(out)


def resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), Residual(6), nn.Dropout(0.3), Residual(6),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )


class Concat(nn.Module):
    """Two branches joined with torch.cat along channels: wrong in the packed layout."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Linear(6 * 16, 3)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], 1).flatten(1))


def _data(batch: int = 32, shape=(2, 4, 4), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g), torch.randint(0, 3, (batch,), generator=g)


def _opt(model, variant="sam", **kw):
    cfg = SAMConfig(variant=variant, rho=0.3, m=8, base_kwargs={"lr": 0.1, "momentum": 0.9})
    kw.setdefault("generator", torch.Generator().manual_seed(5))  # randsam: the same noise
    return build_optimizer(model, cfg, **kw)


def _both(model, x, y, k, variant="sam", *, autocast=None, scale=1.0):
    """(loop output, final, buffers), (grouped output, final, buffers) on two copies of ``model``."""
    twin = copy.deepcopy(model)
    loop_opt, grouped_opt = _opt(model, variant), _opt(twin, variant)
    assert supported(grouped_opt, twin)
    loop = loop_opt._loop_pass(model, x, y, F.cross_entropy, k, autocast or nullcontext(), scale)
    grouped = grouped_pass(grouped_opt, twin, x, y, F.cross_entropy, k, autocast or nullcontext(), scale)
    return (*loop, list(model.buffers())), (*grouped, list(twin.buffers()))


def _assert_equal(loop, grouped, rtol=1e-5, atol=1e-6):
    (lo, lf, lb), (go, gf, gb) = loop, grouped
    for name in ("loss", "outputs", "perturbed_loss", "perturbed_outputs"):
        a, b = getattr(lo, name), getattr(go, name)
        assert a.shape == b.shape, name
        assert not b.requires_grad, name
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=name)
    for i, (a, b) in enumerate(zip(lf, gf, strict=True)):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=f"final gradient {i}")
    for i, (a, b) in enumerate(zip(lb, gb, strict=True)):  # BN statistics: one update per micro-batch
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=f"buffer {i}")


def test_packing_round_trips_and_keeps_micro_batches_apart():
    x = torch.arange(4 * 3 * 2 * 2.0).reshape(4, 3, 2, 2)  # k=2 micro-batches of m=2
    packed = pack(x, 2)
    assert packed.shape == (2, 6, 2, 2)
    assert torch.equal(packed[1, 3:], x[3])  # example j*m + i = 1*2 + 1 at [i=1, j*C:]
    assert torch.equal(unpack(packed, 2), x)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("k", [2, 4, 8])
def test_grouped_equals_the_loop_on_a_cnn(variant, k):
    x, y = _data()
    _assert_equal(*_both(cnn(), x, y, k, variant))


@pytest.mark.parametrize("variant", ["sam", "gsam", "obf", "randsam"])
def test_grouped_equals_the_loop_on_an_mlp_with_batchnorm(variant):
    x, y = _data(shape=(2, 4, 4))
    _assert_equal(*_both(mlp(), x, y, 4, variant))


def test_eval_mode_batchnorm_and_frozen_layers():
    model = cnn()
    model.eval()  # BN normalizes with its running statistics, which stay as they are
    model[0].weight.requires_grad_(False)  # a frozen layer still runs grouped, with shared weights
    x, y = _data()
    _assert_equal(*_both(model, x, y, 4))


def test_linear_layers_on_sequences_and_a_custom_forward():
    torch.manual_seed(0)
    x, y = _data(shape=(8, 4))
    _assert_equal(*_both(Sequence(), x, y, 4))


def test_a_grad_scaler_scale_is_undone():
    x, y = _data()
    _assert_equal(*_both(cnn(), x, y, 4, scale=1024.0), rtol=1e-4, atol=1e-5)


def test_bf16_autocast_is_close():
    x, y = _data()
    loop, grouped = _both(cnn(), x, y, 4, autocast=torch.autocast("cpu", dtype=torch.bfloat16))
    for a, b in zip(loop[1], grouped[1]):
        assert (a - b).norm() <= 0.05 * a.norm() + 1e-3


def test_chunks_give_the_same_answer():
    x, y = _data()
    model = cnn()
    twin = copy.deepcopy(model)
    per_micro = 5 * sum(p.numel() * 4 for p in model.parameters())
    whole, chunked = _opt(model), _opt(twin, msharp_memory_mb=3 * per_micro / 2**20)
    assert chunk_size(whole, 8) == 8 and chunk_size(chunked, 8) == 3  # chunks of 3, 3, 2
    a = grouped_pass(whole, model, x, y, F.cross_entropy, 8, nullcontext(), 1.0)
    b = grouped_pass(chunked, twin, x, y, F.cross_entropy, 8, nullcontext(), 1.0)
    _assert_equal((*a, list(model.buffers())), (*b, list(twin.buffers())))


def test_a_custom_forward_is_checked_once_and_then_trusted(monkeypatch):
    from samtune.optim import _msharp_grouped

    checks = []
    check = _msharp_grouped._check_against_loop
    monkeypatch.setattr(_msharp_grouped, "_check_against_loop", lambda *a: checks.append(check(*a)))
    x, y = _data()
    model = resnet()
    ref = copy.deepcopy(model)
    opt, ref_opt = _opt(model, msharp="grouped"), _opt(ref, msharp="loop")
    opt.train_step(model, x, y)
    ref_opt.train_step(ref, x, y)
    assert len(checks) == 1
    # the check leaves no trace: the statistics of the BN before the dropout are those of one
    # loop step (after it, dropout masks differ), and the dropout is back in training mode
    for a, b in zip(model[1].bn.buffers(), ref[1].bn.buffers()):
        torch.testing.assert_close(a, b)
    assert model[2].training
    opt.train_step(model, x, y)
    assert len(checks) == 1


@pytest.mark.parametrize("make", [Concat, lambda: nn.Sequential(
    nn.Flatten(), nn.Linear(32, 3), nn.Softmax(dim=1), nn.Linear(3, 3))])
def test_a_forward_that_mixes_micro_batches_is_refused(make):
    x, y = _data()
    model = make()
    before = copy.deepcopy(model.state_dict())
    forced = _opt(model, msharp="grouped")
    with pytest.raises(RuntimeError, match="disagrees with the loop"):
        forced.train_step(model, x, y)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), before.values()))
    auto = _opt(model)
    with pytest.warns(RuntimeWarning, match="grouped m-sharpness failed"):
        for _ in range(6):
            auto.train_step(model, x, y)
    assert "grouped" not in auto._chooser.times[4]


def test_deep_batchnorm_models_are_checked_in_float64():
    """samtune's resnet18 with ghost BN of 4 examples on 1x1 maps: float32 rounding alone puts
    the grouped step (and the loop itself) percents away from the exact answer, which the
    float32 check refused; the float64 check tells exactness from rounding and accepts it."""
    from samtune.optim import _msharp_grouped

    torch.manual_seed(0)
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 10, (32,))
    model = build_model("resnet18", (3, 8, 8), 10)
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.05, m=4), msharp="grouped")
    opt.msharp_memory_mb = 4096  # all 8 micro-batches in one grouped call
    layers, _ = _msharp_grouped._cached(opt, model)[1]
    args = (opt, model, layers, x, y, F.cross_entropy, 8, nullcontext(), 1.0)
    ref = _msharp_grouped._reference(*args[:2], *args[3:])
    assert _msharp_grouped._gap_to(ref, *args) > _msharp_grouped.CHECK_RTOL  # the old check failed
    before = [p.detach().clone() for p in model.parameters()]
    params = list(model.parameters())
    _msharp_grouped._check_against_loop(*args)  # no error
    assert all(p is q and p.dtype == torch.float32 and torch.equal(p, b)
               for p, q, b in zip(model.parameters(), params, before))
    with torch.no_grad():
        backup = _msharp_loop.climb(opt.path_context(), [torch.zeros_like(p) for p in params])
    assert backup[0].dtype == torch.float32


class Float32Only(nn.Module):
    def forward(self, x):
        return x.float()


def test_a_model_that_cannot_run_in_float64_is_checked_in_its_own_precision(monkeypatch):
    from samtune.optim import _msharp_grouped

    seen = []
    gap_to = _msharp_grouped._gap_to
    monkeypatch.setattr(_msharp_grouped, "_gap_to", lambda ref, opt, model, layers, x, *a: (
        seen.append(x.dtype), gap_to(ref, opt, model, layers, x, *a))[1])
    torch.manual_seed(0)
    model = nn.Sequential(Float32Only(), nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4),
                          nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    x, y = _data()
    ref = copy.deepcopy(model)
    got = _opt(model, msharp="grouped").train_step(model, x, y)
    want = _opt(ref, msharp="loop").train_step(ref, x, y)
    assert seen == [torch.float32]
    torch.testing.assert_close(got.loss, want.loss)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


def test_samtune_models_are_supported():
    for name in ("cnn", "mlp", "resnet18"):
        model = build_model(name, (1, 8, 8), 10)
        assert supported(_opt(model), model), name


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(32, 8), nn.LayerNorm(8), nn.Linear(8, 3)),
    lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.Flatten(),
                          nn.Linear(48, 3)),
    lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, momentum=None), nn.Flatten(),
                          nn.Linear(12, 3)),
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(32, 3), nn.PReLU()),
])
def test_models_outside_the_whitelist_are_refused(make):
    model = make()
    assert not supported(_opt(model), model)


def test_hooks_and_foreign_parameters_are_refused():
    model = cnn()
    assert supported(_opt(model, "randsam"), model)  # randsam's noise runs grouped too
    handle = model[0].register_forward_hook(lambda *a: None)
    assert not supported(_opt(model), model)
    handle.remove()
    assert supported(_opt(model), model)
    assert not supported(_opt(nn.Linear(3, 3)), cnn())  # parameters the model does not hold


def test_forwards_are_restored_even_when_a_pass_fails():
    model = nn.Sequential(nn.Flatten(), nn.Linear(32, 3))
    x, y = _data()
    opt = _opt(model, msharp="grouped")
    with pytest.raises(RuntimeError):
        opt.train_step(model, x[:, :1], y)  # 16 features for a Linear(32, 3)
    assert "forward" not in model[1].__dict__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.train_step(model, x, y)


def test_linear_layers_on_inputs_with_two_middle_axes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 5, 3))
    x, y = _data(shape=(2, 3, 4))
    _assert_equal(*_both(model, x, y, 4))


def test_norm_layers_keep_their_own_eps_and_untracked_batchnorm_normalizes_per_micro_batch():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6, eps=0.5), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1), nn.GroupNorm(2, 8, eps=0.5), nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1), nn.BatchNorm2d(4, eps=0.5, track_running_stats=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    )
    x, y = _data()
    _assert_equal(*_both(model, x, y, 4))


def test_ignored_targets_are_left_out_of_each_micro_batchs_mean():
    x, y = _data()
    y[[1, 2, 3, 20]] = -100  # micro-batch 0 keeps 5 of its 8 targets, micro-batch 2 keeps 7
    _assert_equal(*_both(cnn(), x, y, 4))


def test_the_checks_relative_gap_by_hand():
    from samtune.optim._msharp_grouped import _relative_gap

    ref = [torch.tensor([3.0, 4.0]), torch.tensor([0.0])]  # norms 5 and 0; all of ref: 5
    got = [torch.tensor([3.0, 4.5]), torch.tensor([0.01])]
    gaps = (0.5 / (5 + 5e-3 + 1e-12), 0.01 / (0 + 5e-3 + 1e-12))
    assert _relative_gap(got, ref) == pytest.approx(max(gaps))
    assert _relative_gap(ref, ref) == 0.0 and _relative_gap([], []) == 0.0


def test_a_linear_layer_on_an_image_keeps_its_spatial_axes_for_the_conv_after_it():
    """Linear on (B, C, H, W) mixes W only: its output must keep H for the Conv2d that reads it
    (a Flatten after it, as above, cannot tell (B, C, H, out) from (B, C, H * out))."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Conv2d(2, 3, 2), nn.Flatten(),
                          nn.Linear(3 * 2 * 4, 3))
    x, y = _data(shape=(2, 3, 4))
    _assert_equal(*_both(model, x, y, 4))
