"""The engine and the training loop on a CUDA device (skipped where there is none).

Known answers as on the CPU: a CUDA step equals the same step on the CPU, the vectorized
m-sharpness paths (vmap, grouped, fused) equal the loop, the fp16 GradScaler skips an update when
a pass overflows and otherwise equals an unscaled run, and BatchNorm statistics are untouched by
the perturbed pass.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samtune import SAMConfig, build_optimizer, list_variants
from tests.optim.conftest import overflowing_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PERTURBING = [v for v in list_variants() if v != "sgd"]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def full_fp32():
    """Compare in true float32: cuDNN and cuBLAS would otherwise use TF32 (10-bit mantissa)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def _batch(device, n: int = 64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x.to(device), y.to(device)


def _run(variant, device, *, m=None, msharp="auto", steps=3, **kw):
    model = _cnn().to(device)
    cfg = SAMConfig(variant=variant, rho=0.1, m=m, base_kwargs={"lr": 0.05, "momentum": 0.9})
    gen = torch.Generator(device=device).manual_seed(7)
    opt = build_optimizer(model, cfg, msharp=msharp, generator=gen)
    x, y = _batch(device)
    out = None
    for _ in range(steps):
        out = opt.train_step(model, x, y, **kw)
    return model, out


@pytest.mark.parametrize("variant", ["sgd", "sam", "asam", "gsam", "obf"])
def test_cuda_step_equals_the_cpu_step(variant):
    gpu, gpu_out = _run(variant, CUDA)
    cpu, cpu_out = _run(variant, torch.device("cpu"))
    for (name, a), b in zip(gpu.state_dict().items(), cpu.state_dict().values()):
        assert torch.allclose(a.cpu().float(), b.float(), atol=1e-4, rtol=1e-3), name
    assert torch.allclose(gpu_out.loss.cpu(), cpu_out.loss, atol=1e-4)


@pytest.mark.parametrize("variant,msharp", [
    *((v, "vmap") for v in PERTURBING), *((v, "grouped") for v in PERTURBING if v != "randsam"),
])
def test_cuda_vectorized_m_sharpness_equals_the_loop(variant, msharp):
    loop, loop_out = _run(variant, CUDA, m=16, msharp="loop")
    vec, vec_out = _run(variant, CUDA, m=16, msharp=msharp)
    for (name, a), b in zip(loop.state_dict().items(), vec.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4, rtol=1e-3), name
    assert torch.allclose(loop_out.perturbed_outputs, vec_out.perturbed_outputs, atol=1e-4)


def test_cuda_perturbed_pass_leaves_bn_statistics_alone():
    model = _cnn().to(CUDA)
    ref = copy.deepcopy(model)
    x, y = _batch(CUDA)
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.5, base_kwargs={"lr": 0.0}))
    opt.train_step(model, x, y)
    ref.train()(x)  # one clean forward: the only BN update a SAM step may make
    for (name, a), b in zip(model.named_buffers(), ref.buffers()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("bad_pass", [1, 2])
def test_cuda_fp16_scaler_skips_overflowing_steps_then_matches_unscaled(bad_pass):
    model = _cnn().to(CUDA)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cuda", init_scale=1024.0)
    cfg = SAMConfig(variant="sam", rho=0.1, base_kwargs={"lr": 0.05})
    opt = build_optimizer(model, cfg, msharp="loop")
    x, y = _batch(CUDA)
    opt.train_step(model, x, y, overflowing_loss(bad_pass), scaler=scaler)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), before))
    assert scaler.get_scale() == 512.0
    ref = _cnn().to(CUDA)
    ref.load_state_dict(model.state_dict())  # the skipped step still ran BN's clean pass
    ref_opt = build_optimizer(ref, cfg)
    opt.train_step(model, x, y, scaler=scaler)
    ref_opt.train_step(ref, x, y)
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [None, 16])
def test_cuda_mixed_precision_trains(dtype, m):
    model = _cnn().to(CUDA)
    x, y = _batch(CUDA)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.05, m=m, base_kwargs={"lr": 0.05, "momentum": 0.9}))
    model.eval()
    first = F.cross_entropy(model(x), y).item()
    model.train()
    for _ in range(30):
        out = opt.train_step(model, x, y, scaler=scaler, autocast_dtype=dtype)
    assert out.outputs.dtype == dtype
    model.eval()
    assert F.cross_entropy(model(x), y).item() < first


def test_training_loop_runs_on_cuda_with_metrics():
    from samtune.data import load_data
    from samtune.models import build_model
    from samtune.train import TrainConfig, seed_everything, train

    data = load_data("builtin:digits", seed=0)
    seed_everything(0)
    model = build_model(None, data.input_shape, data.num_classes)
    cfg = SAMConfig(variant="sam", rho=0.05, m=16, base_kwargs={"lr": 0.05, "momentum": 0.9})
    result = train(model, data, cfg, TrainConfig(epochs=4, batch_size=64, seed=0))
    assert next(result.model.parameters()).device.type == "cuda"
    assert result.val_acc > 0.8
    assert 0.0 <= result.final["flip_rate"] <= 1.0


@pytest.mark.parametrize("variant", ["sam", "obf"])
def test_cuda_fused_m_sharpness_equals_the_loop(variant):
    def run(msharp):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(48, 64), nn.ReLU(), nn.Linear(64, 10)).to(CUDA)
        cfg = SAMConfig(variant=variant, rho=0.1, m=8, base_kwargs={"lr": 0.05, "momentum": 0.9})
        opt = build_optimizer(model, cfg, msharp=msharp)
        x, y = _batch(CUDA)
        for _ in range(3):
            out = opt.train_step(model, x.flatten(1)[:, :48], y)
        return model, out

    loop, loop_out = run("loop")
    fused, fused_out = run("fused")
    for a, b in zip(loop.parameters(), fused.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(loop_out.perturbed_outputs, fused_out.perturbed_outputs, atol=1e-5)
