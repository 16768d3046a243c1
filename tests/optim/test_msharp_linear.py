"""The fused Linear-layer m-sharpness pass against the micro-batch loop, and what it refuses."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samtune import SAMConfig, build_optimizer
from samtune.models import build_model
from samtune.optim import SAMOptimizer
from samtune.optim._msharp_linear import fits, fused_pass, supported
from tests.optim.conftest import mlp

OBF = {
    "obf-sigmoid-g0": {"prob": "sigmoid", "gamma": 0.0},
    "obf-sigmoid-g1": {"prob": "sigmoid", "gamma": 1.0},
    "obf-softmax-g0": {"prob": "softmax", "gamma": 0.0},
    "obf-softmax-g1": {"prob": "softmax", "gamma": 1.0},
}
COMPOSED = ["asam", "gsam", "gsam-obf", "asam-obf"]
VARIANTS = ["sam", *OBF, *COMPOSED]


def deep(seed: int = 0) -> nn.Module:
    """Flatten, a bias-free layer, a layer whose weight is frozen (bias-only), GELU, Tanh."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 16, bias=False), nn.GELU(), nn.Linear(16, 16), nn.Tanh(),
        nn.Dropout(0.0), nn.Linear(16, 12), nn.Identity(), nn.SiLU(), nn.Linear(12, 3),
    )
    model[6].weight.requires_grad_(False)
    return model


def _config(variant: str, rho: float = 0.3, **kw) -> SAMConfig:
    if variant in OBF:
        return SAMConfig(variant="obf", rho=rho, variant_kwargs=OBF[variant], **kw)
    if "gsam" in variant:  # a large alpha, so a wrong decomposition shows
        kw.setdefault("variant_kwargs", {"alpha": 0.7, **({"gamma": 1.0} if "obf" in variant else {})})
    if variant == "asam-obf":
        kw.setdefault("variant_kwargs", {"gamma": 1.0, "eta": 0.05})
    return SAMConfig(variant=variant, rho=rho, **kw)


def _data(batch: int, features: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, features, generator=g)
    return x, torch.randint(0, classes, (batch,), generator=g)


def _both(model, make_opt, x, y, k, *, loss_fn=F.cross_entropy, autocast=None, scale=1.0):
    """(loop output, loop final), (fused output, fused final) on two copies of ``model``."""
    twin = copy.deepcopy(model)
    loop_opt, fused_opt = make_opt(model), make_opt(twin)
    assert supported(fused_opt, twin)
    ctx = autocast or nullcontext()
    loop = loop_opt._loop_pass(model, x, y, loss_fn, k, ctx, scale)
    fused = fused_pass(fused_opt, twin, x, y, loss_fn, k, autocast or nullcontext(), scale)
    return loop, fused


def _assert_equal(loop, fused, rtol=1e-5, atol=1e-6):
    (lo, lf), (fo, ff) = loop, fused
    for name in ("loss", "outputs", "perturbed_loss", "perturbed_outputs"):
        a, b = getattr(lo, name), getattr(fo, name)
        assert a.shape == b.shape, name
        assert not b.requires_grad, name
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=name)
    assert len(lf) == len(ff)
    for i, (a, b) in enumerate(zip(lf, ff)):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=f"final gradient {i}")


SPLITS = [(32, 1), (32, 2), (32, 4), (32, 8), (32, 16), (64, 4), (64, 16)]  # (batch, k)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch,k", SPLITS)
def test_fused_equals_the_loop(variant, batch, k):
    x, y = _data(batch)
    loop, fused = _both(mlp(), lambda mod: build_optimizer(mod, _config(variant)), x, y, k)
    _assert_equal(loop, fused)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("k", [2, 8])
def test_fused_equals_the_loop_on_a_deeper_model(variant, k):
    x, y = _data(32)
    loop, fused = _both(deep(), lambda mod: build_optimizer(mod, _config(variant)), x, y, k)
    _assert_equal(loop, fused)


@pytest.mark.parametrize("variant", ["sam", "obf-softmax-g1", *COMPOSED])
def test_weight_and_bias_in_groups_with_different_rho(variant):
    x, y = _data(32)

    def make_opt(model):
        weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
        groups = [{"params": weights, "rho": 0.05}, {"params": biases, "rho": 0.8}]
        return SAMOptimizer(groups, _config(variant), model=model)

    loop, fused = _both(deep(), make_opt, x, y, 4)
    _assert_equal(loop, fused)


@pytest.mark.parametrize("variant", ["sam", "obf-sigmoid-g1", *COMPOSED])
def test_a_grad_scaler_scale_is_undone(variant):
    x, y = _data(32)
    loop, fused = _both(mlp(), lambda mod: build_optimizer(mod, _config(variant)), x, y, 4,
                        scale=1024.0)
    _assert_equal(loop, fused)


def test_other_loss_functions_go_micro_batch_by_micro_batch():
    x, y = _data(32)
    y[3] = y[17] = -100  # ignored targets: cross-entropy's mean counts only the others

    def smoothed(out, t):
        return F.cross_entropy(out, t, label_smoothing=0.1)

    for loss_fn in (F.cross_entropy, smoothed):
        loop, fused = _both(mlp(), lambda mod: build_optimizer(mod, _config("sam")), x, y, 4,
                            loss_fn=loss_fn)
        _assert_equal(loop, fused)


@pytest.mark.parametrize("variant", ["sam", "obf-sigmoid-g1", *COMPOSED])
def test_bf16_autocast_is_close(variant):
    x, y = _data(64)
    loop, fused = _both(deep(), lambda mod: build_optimizer(mod, _config(variant)), x, y, 8,
                        autocast=torch.autocast("cpu", dtype=torch.bfloat16))
    (lo, lf), (fo, ff) = loop, fused
    assert fo.outputs.dtype == lo.outputs.dtype == torch.bfloat16
    torch.testing.assert_close(fo.perturbed_outputs, lo.perturbed_outputs, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(fo.perturbed_loss, lo.perturbed_loss, rtol=2e-2, atol=2e-2)
    for a, b in zip(lf, ff):
        assert b.dtype == a.dtype == torch.float32
        assert (b - a).norm() <= 3e-2 * a.norm() + 1e-4  # bf16 vs fp32 itself: ~1e-2


def test_weights_and_gradients_are_left_alone():
    model = mlp()
    opt = build_optimizer(model, _config("sam"))
    before = [p.detach().clone() for p in model.parameters()]
    fused_pass(opt, model, *_data(32), F.cross_entropy, 4, nullcontext(), 1.0)
    for p, w in zip(model.parameters(), before):
        assert torch.equal(p, w)
        assert p.grad is None
    assert all(not m._forward_hooks for m in model.modules())


# -- what the fused path accepts --------------------------------------------------------------


def test_samtune_mlp_is_supported():
    for model in (build_model("mlp", (6,), 3), build_model(None, (4, 4), 3), mlp(), deep()):
        assert supported(build_optimizer(model, _config("sam")), model)
        assert supported(build_optimizer(model, _config("obf-sigmoid-g1")), model)


def test_the_baseline_is_refused():
    model = mlp()
    assert not supported(build_optimizer(model, SAMConfig(variant="sgd", rho=0.1)), model)


@pytest.mark.parametrize("k", [2, 8])
def test_randsam_draws_the_loops_noise(k):
    x, y = _data(32)

    def make_opt(model):
        return build_optimizer(model, _config("randsam"), generator=torch.Generator().manual_seed(5))

    loop, fused = _both(deep(), make_opt, x, y, k)
    _assert_equal(loop, fused)


def test_asam_beyond_the_memory_bound_is_refused():
    model = mlp()
    opt = build_optimizer(model, _config("asam"), msharp_memory_mb=1e-3)
    assert supported(opt, model) and not fits(opt, 4)
    with pytest.raises(RuntimeError, match="msharp_memory_mb"):
        fused_pass(opt, model, *_data(32), F.cross_entropy, 4, nullcontext(), 1.0)
    assert fits(build_optimizer(model, _config("gsam"), msharp_memory_mb=1e-3), 4)


class _MyLinear(nn.Linear):
    pass


@pytest.mark.parametrize("make", [
    lambda: build_model("mlp", (6,), 3, batchnorm=True),
    lambda: mlp(bn=True),
    lambda: build_model("cnn", (1, 8, 8), 3),
    lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 3)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 3)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Linear(16, 3)),
    lambda: nn.Sequential(_MyLinear(6, 16), nn.ReLU(), nn.Linear(16, 3)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.Softmax(dim=0), nn.Linear(16, 3)),
    lambda: nn.Sequential(nn.Flatten(0), nn.Linear(6, 3)),
], ids=["samtune-mlp-bn", "bn", "cnn", "conv", "dropout", "inplace", "layernorm", "subclass",
        "other-module", "flatten-batch"])
def test_models_outside_the_whitelist_are_refused(make):
    model = make()
    assert not supported(build_optimizer(model, _config("sam")), model)


def test_dropout_is_fine_in_eval_mode_only():
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 3))
    opt = build_optimizer(model, _config("sam"))
    assert not supported(opt, model)
    model.eval()
    assert supported(opt, model)


def test_hooks_and_foreign_parameters_are_refused():
    model = mlp()
    handle = model[0].register_forward_hook(lambda mod, args, out: out * 2)
    assert not supported(build_optimizer(model, _config("sam")), model)
    handle.remove()
    extra = nn.Parameter(torch.zeros(3))
    opt = SAMOptimizer([*model.parameters(), extra], _config("sam"), model=model)
    assert not supported(opt, model)
    with pytest.raises(RuntimeError, match="fused m-sharpness"):
        fused_pass(opt, model, *_data(32), F.cross_entropy, 4, nullcontext(), 1.0)


def test_tied_weights_are_refused():
    first, second = nn.Linear(8, 8), nn.Linear(8, 8)
    second.weight = first.weight
    model = nn.Sequential(first, nn.ReLU(), second)
    assert not supported(build_optimizer(model, _config("sam")), model)


def test_run_time_mismatches_raise_and_clean_up():
    shared = nn.Linear(6, 6)
    twice = nn.Sequential(shared, nn.ReLU(), shared)  # passes the static check
    opt = build_optimizer(twice, _config("sam"))
    assert supported(opt, twice)
    x, y = _data(32, classes=6)
    with pytest.raises(RuntimeError, match="ran twice"):
        fused_pass(opt, twice, x, y, F.cross_entropy, 4, nullcontext(), 1.0)
    assert not shared._forward_hooks
    seq = nn.Sequential(nn.Linear(6, 3))
    opt = build_optimizer(seq, _config("sam"))
    with pytest.raises(RuntimeError, match="shape"):
        fused_pass(opt, seq, torch.randn(32, 2, 6), y, F.cross_entropy, 4, nullcontext(), 1.0)
    assert not seq[0]._forward_hooks


@pytest.mark.parametrize("variant", ["asam", "asam-obf"])
def test_asam_steps_reuse_their_weight_buffers_and_still_equal_the_loop(variant, monkeypatch):
    """Three training steps on the fused path (its per-micro-batch weights written into
    buffers kept between steps) leave the weights the loop leaves; above ``KEEP_MB`` nothing
    is kept and the steps are the same."""
    from samtune.optim import _msharp_linear

    x, y = _data(32)
    models = {mode: mlp() for mode in ("loop", "fused", "fresh")}
    opts = {mode: build_optimizer(mod, _config(variant, m=8), msharp="loop" if mode == "loop" else "fused")
            for mode, mod in models.items()}
    for _ in range(3):
        for mode in models:
            monkeypatch.setattr(_msharp_linear, "KEEP_MB", 0.0 if mode == "fresh" else 64.0)
            opts[mode].train_step(models[mode], x, y, F.cross_entropy)
    kept = opts["fused"].path_context().cache["_fused_buffers"]
    layers = [mod for mod in models["fused"].modules() if isinstance(mod, nn.Linear)]
    assert len(kept) == len(layers) and all(b.shape[0] == 4 for b in kept.values())  # k = 32 / 8
    assert not opts["fresh"].path_context().cache.get("_fused_buffers")
    for mode in ("fused", "fresh"):
        for a, b in zip(models["loop"].parameters(), models[mode].parameters()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["sam", "asam", "gsam"])
def test_probability_targets_take_a_plain_mean_per_micro_batch(variant):
    """Soft targets (class probabilities): cross-entropy averages every row, none ignored."""
    x, y = _data(32)
    soft = F.one_hot(y, 3).float() * 0.8 + 0.2 / 3
    loop, fused = _both(mlp(), lambda mod: build_optimizer(mod, _config(variant)), x, soft, 4)
    _assert_equal(loop, fused)


def test_unflatten_keeps_the_batch_axis_or_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Unflatten(1, (3, 4)), nn.Flatten(), nn.Linear(12, 3))
    x, y = _data(32)
    loop, fused = _both(model, lambda mod: build_optimizer(mod, _config("sam")), x, y, 4)
    _assert_equal(loop, fused)
    folding = nn.Sequential(nn.Linear(6, 12), nn.Unflatten(0, (4, 8)), nn.Flatten(0), nn.Linear(12, 3))
    assert not supported(build_optimizer(folding, _config("sam")), folding)


@pytest.mark.parametrize("variant", ["asam", "randsam"])
def test_the_memory_bound_holds_at_equality_for_every_variant_that_forms_e_j(variant):
    model = mlp()
    per_micro = 2 * sum(p.numel() * p.element_size() for p in model.parameters())  # ADAPTIVE_COPIES
    exact = 4 * per_micro / 2**20  # k = 4 micro-batches fill it to the byte
    assert fits(build_optimizer(model, _config(variant), msharp_memory_mb=exact), 4)
    assert not fits(build_optimizer(model, _config(variant), msharp_memory_mb=exact * 0.999), 4)
    assert fits(build_optimizer(model, _config("sam"), msharp_memory_mb=exact * 1e-3), 4)


@pytest.mark.parametrize("variant", ["asam", "randsam"])
def test_layers_of_one_shape_keep_weight_buffers_of_their_own(variant):
    """Two layers with the same (out, in): each needs its own E_j until the perturbed pass."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = _data(32)

    def make_opt(mod):  # randsam: the loop and the fused pass draw the same noise
        return build_optimizer(mod, _config(variant), generator=torch.Generator().manual_seed(5))

    loop, fused = _both(model, make_opt, x, y, 4)
    _assert_equal(loop, fused)


def test_weight_buffers_are_kept_up_to_keep_mb_and_no_further(monkeypatch):
    from samtune.optim import _msharp_linear

    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    ctx = build_optimizer(model, _config("asam")).path_context()
    shape, dtype = (4, 8, 8), torch.float64  # 2048 bytes each
    monkeypatch.setattr(_msharp_linear, "KEEP_MB", 2 * 2048 / 2**20)  # room for two
    first = _msharp_linear._weight_buffer(ctx, model[0], shape, dtype)
    assert first.shape == shape and first.dtype == dtype
    assert _msharp_linear._weight_buffer(ctx, model[0], shape, dtype) is first  # kept
    second = _msharp_linear._weight_buffer(ctx, model[1], shape, dtype)
    assert second is not None and second.data_ptr() != first.data_ptr()  # fills it exactly
    assert _msharp_linear._weight_buffer(ctx, model[2], shape, dtype) is None  # over the bound
    monkeypatch.setattr(_msharp_linear, "KEEP_MB", 2.5 * 2048 / 2**20)  # half a buffer more
    assert _msharp_linear._weight_buffer(ctx, model[2], shape, dtype) is None  # in bytes, whole
    assert len(ctx.cache["_fused_buffers"]) == 2


def test_a_second_model_on_the_same_parameters_gets_its_own_layers():
    """The layers found for one model are cached; another model object (here new Linear modules
    holding the same parameters) is looked at afresh, not run with the first one's hooks."""
    first = mlp()
    second = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    for mine, theirs in zip((second[0], second[2]), (first[0], first[2])):
        mine.weight, mine.bias = theirs.weight, theirs.bias
    opt = build_optimizer(first, _config("sam"))
    x, y = _data(32)
    a = fused_pass(opt, first, x, y, F.cross_entropy, 4, nullcontext(), 1.0)
    b = fused_pass(opt, second, x, y, F.cross_entropy, 4, nullcontext(), 1.0)
    _assert_equal(a, b, rtol=0, atol=0)
