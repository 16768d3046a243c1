"""The optimizer against plain PyTorch, the loop against the vectorized path, and the BN policy."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from samtune import ConfigError, SAMConfig, build_optimizer, list_variants
from tests.optim.conftest import mlp, overflowing_loss

PERTURBING = [v for v in list_variants() if v != "sgd"]
CLOSURE_OK = ["sgd", "sam", "asam", "gsam", "randsam"]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _run(variant, batch, *, steps=3, bn=False, base="sgd", rho=0.1, m=None, msharp="auto", **kw):
    model = mlp(bn=bn)
    base_kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3} if base == "sgd" else {"lr": 1e-2}
    cfg = SAMConfig(variant=variant, rho=rho, m=m, base=base, base_kwargs=base_kwargs, **kw)
    opt = build_optimizer(model, cfg, msharp=msharp, generator=torch.Generator().manual_seed(7))
    x, y = batch
    out = None
    for _ in range(steps):
        out = opt.train_step(model, x, y)
    return model, out


@pytest.mark.parametrize("base", ["sgd", "adamw"])
@pytest.mark.parametrize("variant", list_variants())
def test_rho_zero_equals_the_base_optimizer(variant, base, batch):
    model, _ = _run(variant, batch, rho=0.0, base=base)
    ref = mlp()
    kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3} if base == "sgd" else {"lr": 1e-2}
    opt = (torch.optim.SGD if base == "sgd" else torch.optim.AdamW)(ref.parameters(), **kwargs)
    x, y = batch
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
    # gsam-obf included: a step whose rho is 0 is the base optimizer's step for every variant
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_sam_step_matches_a_hand_written_reference(batch):
    x, y = batch
    model = mlp()
    ref = copy.deepcopy(model)
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.2, base_kwargs={"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}))
    opt.train_step(model, x, y)
    params = list(ref.parameters())
    g = torch.autograd.grad(F.cross_entropy(ref(x), y), params)
    norm = torch.sqrt(sum((t**2).sum() for t in g)) + 1e-12
    with torch.no_grad():
        for p, gi in zip(params, g):
            p.add_(0.2 * gi / norm)
    g_p = torch.autograd.grad(F.cross_entropy(ref(x), y), params)
    with torch.no_grad():
        for p, gi, gpi in zip(params, g, g_p):
            p.sub_(0.2 * gi / norm)
            p.sub_(0.1 * gpi)
    for a, b in zip(model.parameters(), params):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("variant", list_variants())
@pytest.mark.parametrize("bn", [False, True])
def test_ascent_and_restore_leave_weights_bit_identical(variant, bn, batch):
    model = mlp(bn=bn)
    before = [p.detach().clone() for p in model.parameters()]
    cfg = SAMConfig(variant=variant, rho=0.5, base_kwargs={"lr": 0.0, "momentum": 0.0, "weight_decay": 0.0})
    opt = build_optimizer(model, cfg)
    opt.train_step(model, *batch)
    for p, w in zip(model.parameters(), before):
        assert torch.equal(p, w)
    if variant in CLOSURE_OK:
        x, y = batch

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
        for p, w in zip(model.parameters(), before):
            assert torch.equal(p, w)


@pytest.mark.parametrize("variant", PERTURBING)
@pytest.mark.parametrize("bn", [False, True])
def test_vectorized_m_sharpness_equals_the_loop(variant, bn, batch):
    loop_model, loop_out = _run(variant, batch, bn=bn, m=8, msharp="loop")
    vec_model, vec_out = _run(variant, batch, bn=bn, m=8, msharp="vmap")
    for (name, a), b in zip(loop_model.state_dict().items(), vec_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    assert torch.allclose(loop_out.outputs, vec_out.outputs, atol=1e-5)
    assert torch.allclose(loop_out.perturbed_outputs, vec_out.perturbed_outputs, atol=1e-5)
    assert torch.allclose(loop_out.perturbed_loss, vec_out.perturbed_loss, atol=1e-6)


def test_vectorized_path_chunks_to_its_memory_bound(batch):
    # a bound that fits two micro-batches at a time: four chunks for k = 4, same answer
    per_micro = 4 * sum(p.numel() * 4 for p in mlp().parameters())
    full, _ = _run("sam", batch, m=8, msharp="vmap")
    cfg = SAMConfig(variant="sam", rho=0.1, m=8, base_kwargs={"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3})
    chunked = mlp()
    opt = build_optimizer(chunked, cfg, msharp="vmap", msharp_memory_mb=2 * per_micro / 2**20)
    from samtune.optim._msharp import chunk_size
    assert chunk_size(opt, chunked, 4) == 2
    for _ in range(3):
        opt.train_step(chunked, *batch)
    for a, b in zip(full.parameters(), chunked.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_auto_mode_uses_the_loop_when_memory_does_not_fit(batch):
    model = mlp(bn=True)  # not for the fused path
    opt = build_optimizer(model, SAMConfig(variant="sam", m=8), msharp_memory_mb=1e-6)
    opt.train_step(model, *batch)
    assert opt.msharp_choice == {4: "loop"}


def test_auto_mode_drops_a_path_that_fails_at_run_time(batch, monkeypatch):
    import dataclasses

    from samtune.optim import _paths

    def broken(*args):
        raise RuntimeError("boom")

    fused = _paths.get_path("fused")
    monkeypatch.setitem(_paths._REGISTRY, "fused", dataclasses.replace(fused, run=broken))
    model, ref = mlp(), mlp()
    cfg = SAMConfig(variant="sam", m=8, base_kwargs={"lr": 0.1})
    opt, ref_opt = build_optimizer(model, cfg), build_optimizer(ref, cfg, msharp="loop")
    with pytest.warns(RuntimeWarning, match="fused m-sharpness failed"):
        for _ in range(10):
            opt.train_step(model, *batch)
            ref_opt.train_step(ref, *batch)
    assert set(opt._chooser.times[4]) == {"grouped", "vmap", "loop"}
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    forced = build_optimizer(mlp(), cfg, msharp="fused")
    with pytest.raises(RuntimeError, match="boom"):
        forced.train_step(mlp(), *batch)


def test_auto_mode_times_both_paths_then_keeps_the_faster(batch):
    model, ref = mlp(), mlp()
    cfg = SAMConfig(variant="sam", m=8, base_kwargs={"lr": 0.1})
    opt = build_optimizer(model, cfg)
    ref_opt = build_optimizer(ref, cfg, msharp="loop")
    for step in range(18):
        opt.train_step(model, *batch)
        ref_opt.train_step(ref, *batch)
        if step < 15:  # four implementations, four timed steps each
            assert opt.msharp_choice == {}
    assert opt.msharp_choice[4] in ("fused", "grouped", "vmap", "loop")
    assert set(opt._chooser.times[4]) == {"fused", "grouped", "vmap", "loop"}
    assert all(len(v) == 4 for v in opt._chooser.times[4].values())
    for a, b in zip(model.parameters(), ref.parameters()):  # same updates whichever ran
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("m", [None, 8])
def test_perturbed_pass_never_touches_bn_running_stats(m, batch):
    x, y = batch
    model = mlp(bn=True)
    clean = copy.deepcopy(model)
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.5, m=m))
    opt.train_step(model, x, y)
    # the documented policy: one clean-pass update per micro-batch, in order
    with torch.no_grad():
        for chunk in x.chunk(1 if m is None else 32 // m):
            clean(chunk)
    for name in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.allclose(model.state_dict()[name].float(), clean.state_dict()[name].float(), atol=1e-6), name


def test_closure_step_protects_bn_stats_and_matches_train_step(batch):
    x, y = batch
    a, b = mlp(bn=True), mlp(bn=True)
    cfg = SAMConfig(variant="sam", rho=0.3)
    opt_a, opt_b = build_optimizer(a, cfg), build_optimizer(b, cfg)
    for _ in range(2):
        opt_a.train_step(a, x, y)

        def closure():
            opt_b.zero_grad()
            loss = F.cross_entropy(b(x), y)
            loss.backward()
            return loss

        loss = opt_b.step(closure)
    assert loss is not None and loss.ndim == 0
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-6), name


@pytest.mark.parametrize("variant", list_variants())
def test_training_loss_falls_with_each_variant(variant):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    model = mlp()
    rho = 0.5 if variant.startswith("asam") else 0.05
    opt = build_optimizer(model, SAMConfig(variant=variant, rho=rho, base_kwargs={"lr": 0.1}))
    first = F.cross_entropy(model(x), y).item()
    for _ in range(40):
        opt.train_step(model, x, y)
    assert F.cross_entropy(model(x), y).item() < 0.7 * first


def test_gradient_accumulation_equals_m_sharpness(batch):
    x, y = batch
    ref, _ = _run("sam", batch, steps=1, m=8, msharp="loop")
    model = mlp()
    cfg = SAMConfig(variant="sam", rho=0.1, base_kwargs={"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3})
    opt = build_optimizer(model, cfg)
    chunks = list(zip(x.chunk(4), y.chunk(4)))
    for i, (xc, yc) in enumerate(chunks):
        opt.train_step(model, xc, yc, update=i == len(chunks) - 1)
    for a, b in zip(ref.parameters(), model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert opt.sam_step == 1


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("msharp", ["loop", "auto"])
def test_a_batch_m_does_not_divide_ends_with_a_smaller_micro_batch(batch, bn, msharp):
    """32 examples with m=10: micro-batches of 10, 10, 10 and 2, each weighted by its size,
    which is what accumulating those four chunks with m=None gives."""
    x, y = batch
    cfg = SAMConfig(variant="sam", rho=0.1, m=10, base_kwargs={"lr": 0.1, "momentum": 0.9})
    model, ref = mlp(bn=bn), mlp(bn=bn)
    opt = build_optimizer(model, cfg, msharp=msharp)
    ref_opt = build_optimizer(ref, SAMConfig.from_dict({**cfg.to_dict(), "m": None}))
    for _ in range(2):
        out = opt.train_step(model, x, y)
        parts = [(xc, yc, ref_opt.train_step(ref, xc, yc, update=len(xc) == 2))
                 for xc, yc in zip(x.split(10), y.split(10))]
    for a, b in zip([*model.parameters(), *model.buffers()], [*ref.parameters(), *ref.buffers()]):
        torch.testing.assert_close(a, b)
    want = sum(len(xc) * part.loss for xc, _, part in parts) / len(x)
    torch.testing.assert_close(out.loss, want)
    assert out.outputs.shape == out.perturbed_outputs.shape == (32, 3)
    assert opt.sam_step == 2


def test_a_batch_smaller_than_m_is_one_micro_batch(batch):
    x, y = batch
    model, ref = mlp(), mlp()
    build_optimizer(model, SAMConfig(variant="sam", m=64)).train_step(model, x, y)
    build_optimizer(ref, SAMConfig(variant="sam")).train_step(ref, x, y)
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_closure_is_refused_where_it_cannot_work(batch):
    model = mlp()
    for cfg, needle in [(SAMConfig(variant="obf"), "train_step"), (SAMConfig(variant="sam", m=8), "m-sharpness")]:
        opt = build_optimizer(model, cfg)
        with pytest.raises(ConfigError, match=needle):
            opt.step(lambda: F.cross_entropy(model(batch[0]), batch[1]))
    with pytest.raises(ConfigError, match="needs step\\(closure\\)"):
        build_optimizer(model, SAMConfig(variant="sam")).step()


def test_clipping_applies_to_the_final_gradient(batch):
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = SAMConfig(variant="sam", rho=0.1, max_grad_norm=1e-3,
                    base_kwargs={"lr": 1.0, "momentum": 0.0, "weight_decay": 0.0})
    build_optimizer(model, cfg).train_step(model, *batch)
    step = torch.sqrt(sum(((p - w) ** 2).sum() for p, w in zip(model.parameters(), before)))
    assert abs(step.item() - 1e-3) < 1e-6


def test_lr_scheduler_attaches_the_usual_way(batch):
    model = mlp()
    opt = build_optimizer(model, SAMConfig(variant="sam", base_kwargs={"lr": 0.1}))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.train_step(model, *batch)
        sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_rho_schedule_is_written_into_param_groups(batch):
    model = mlp()
    cfg = SAMConfig(variant="sam", rho=0.1, schedule="linear", schedule_kwargs={"rho_min": 0.0})
    opt = build_optimizer(model, cfg, total_steps=5)
    seen = []
    for _ in range(5):
        opt.train_step(model, *batch)
        seen.append(opt.param_groups[0]["rho"])
    assert seen == pytest.approx([0.1, 0.075, 0.05, 0.025, 0.0])


def test_lr_prop_follows_an_attached_lr_scheduler(batch):
    model = mlp()
    cfg = SAMConfig(variant="gsam", rho=0.2, schedule="lr_prop", schedule_kwargs={"rho_min": 0.02},
                    base_kwargs={"lr": 0.1})
    opt = build_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - 0.25 * s)
    seen = []
    for _ in range(4):
        opt.train_step(model, *batch)
        seen.append(opt.param_groups[0]["rho"])
        sched.step()
    assert seen == pytest.approx([0.2 - 0.18 * 0.25 * s for s in range(4)])


def test_bf16_autocast_trains_on_cpu(batch):
    x, y = batch
    model = mlp()
    opt = build_optimizer(model, SAMConfig(variant="sam", m=8, base_kwargs={"lr": 0.1}))
    first = F.cross_entropy(model(x), y).item()
    for _ in range(20):
        out = opt.train_step(model, x, y, autocast_dtype=torch.bfloat16)
    assert out.outputs.dtype == torch.bfloat16
    assert F.cross_entropy(model(x), y).item() < first


@pytest.mark.parametrize("bad_pass", [1, 2])
def test_fp16_grad_scaler_skips_the_update_when_a_pass_overflows(bad_pass, batch):
    x, y = batch
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.1, base_kwargs={"lr": 0.1}), msharp="loop")
    opt.train_step(model, x, y, overflowing_loss(bad_pass), scaler=scaler)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), before))
    assert scaler.get_scale() == 512.0
    # a clean step then updates with correctly unscaled gradients: equal to an unscaled run
    ref = mlp()
    ref_opt = build_optimizer(ref, SAMConfig(variant="sam", rho=0.1, base_kwargs={"lr": 0.1}))
    opt.train_step(model, x, y, scaler=scaler)
    ref_opt.train_step(ref, x, y)
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_fp16_autocast_with_scaler_trains_on_cpu(batch):
    x, y = batch
    model = mlp()
    scaler = torch.amp.GradScaler("cpu")
    opt = build_optimizer(model, SAMConfig(variant="sam", m=8, base_kwargs={"lr": 0.1}))
    first = F.cross_entropy(model(x), y).item()
    for _ in range(20):
        opt.train_step(model, x, y, scaler=scaler, autocast_dtype=torch.float16)
    assert F.cross_entropy(model(x), y).item() < first


def test_autocast_with_batchnorm_leaves_vmap_out_without_warning(batch):
    # torch's vmap batching rule for batch_norm rejects bf16 inputs beside float32 statistics
    x, y = batch
    model = mlp(bn=True)
    opt = build_optimizer(model, SAMConfig(variant="sam", m=8, base_kwargs={"lr": 0.1}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(10):
            opt.train_step(model, x, y, autocast_dtype=torch.bfloat16)
    assert set(opt._chooser.times[4]) == {"grouped", "loop"}
    assert opt.msharp_choice[4] in ("grouped", "loop")


@pytest.mark.parametrize("variant", ["sam", "obf"])
def test_fused_m_sharpness_through_train_step_equals_the_loop(variant, batch):
    loop_model, loop_out = _run(variant, batch, m=8, msharp="loop")
    fused_model, fused_out = _run(variant, batch, m=8, msharp="fused")
    for a, b in zip(loop_model.parameters(), fused_model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(loop_out.perturbed_outputs, fused_out.perturbed_outputs, atol=1e-5)


def test_chunk_size_counts_saved_activations_without_side_effects(batch):
    x, _ = batch
    model = mlp(bn=True)
    opt = build_optimizer(model, SAMConfig(variant="sam", m=8))
    from samtune.optim._msharp import chunk_size, saved_activation_bytes

    before = _state(model)
    rng = torch.get_rng_state()
    # Linear(6,16) saves its input (8x6), BN saves its input (8x16) and statistics, ReLU its
    # output (8x16), Linear(16,3) its input (8x16): at least 8 x (6 + 16 + 16 + 16) floats
    saved = saved_activation_bytes(opt, model, x[:8])
    assert saved >= 4 * 8 * (6 + 16 + 16 + 16)
    assert all(torch.equal(a, b) for a, b in zip(_state(model).values(), before.values()))
    assert torch.equal(torch.get_rng_state(), rng)
    params = 4 * sum(p.numel() * 4 for p in model.parameters())
    opt.msharp_memory_mb = 2 * (params + saved) / 2**20
    assert chunk_size(opt, model, 4, x) == 2
    assert chunk_size(opt, model, 4) >= 3  # parameters alone would fit more


def test_memory_bound_defaults_to_the_cpu_setting_or_a_share_of_free_gpu_memory(monkeypatch):
    from samtune.optim import _sam

    model = mlp()
    assert build_optimizer(model, SAMConfig(variant="sam", m=8)).msharp_memory_mb == 256.0
    given = build_optimizer(model, SAMConfig(variant="sam", m=8), msharp_memory_mb=3.0)
    assert given.msharp_memory_mb == 3.0
    # on a GPU a fixed 256 MB made ResNet-18's micro-batches run one per call
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 16 * 2**30))
    assert _sam.default_msharp_memory_mb(torch.device("cuda")) == 0.25 * 8 * 2**10
