"""SAM step overhead on a CUDA device: the GPU counterpart of ``step_overhead.py``.

Median step times of a plain torch SGD step (base), samtune's ``sam`` step, and m-sharpness by
the vectorized paths (fused for the MLP, grouped, vmap) and the loop at B/m in 2, 4, 8, 16, plus
SAM under bf16 autocast and under fp16 with a GradScaler (each against a base step with the same
precision). Models: the MLP and CNN of ``step_overhead.py`` and samtune's ResNet-18 on 3x32x32
inputs, batch 128. Every configuration has its own copy of the model; rounds time one block per
configuration in a shuffled order, with ``torch.cuda.synchronize`` around each block; ratios
are taken between medians of the same run.

    python benchmarks/gpu_steps.py --json        # needs a CUDA device; ~2 min on an H100
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from step_overhead import build_cnn, build_mlp  # noqa: E402

from samtune.models import build_model  # noqa: E402
from samtune.optim import SAMConfig, build_optimizer  # noqa: E402

BATCH = 128
SPLITS = (2, 4, 8, 16)
LR, MOMENTUM, WEIGHT_DECAY, RHO = 0.05, 0.9, 5e-4, 0.05
MODELS = {
    "mlp": (build_mlp, (64,)),
    "cnn": (build_cnn, (1, 8, 8)),
    "resnet18": (lambda: build_model("resnet18", (3, 32, 32), 10), (3, 32, 32)),
}


def runners(name: str, device: torch.device) -> dict:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    init = build().to(device)
    gen = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(BATCH, *shape, device=device, generator=gen)
    y = torch.randint(0, 10, (BATCH,), device=device, generator=gen)
    base_kwargs = {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    out = {}

    def base(dtype=None):
        model = copy.deepcopy(init).train()
        opt = torch.optim.SGD(model.parameters(), **base_kwargs)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), y)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        return step

    def sam(m=None, msharp="auto", dtype=None):
        model = copy.deepcopy(init).train()
        opt = build_optimizer(model, SAMConfig(variant="sam", rho=RHO, m=m, base_kwargs=base_kwargs),
                              msharp=msharp)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return lambda: opt.train_step(model, x, y, scaler=scaler, autocast_dtype=dtype)

    out["base"] = base()
    out["sam"] = sam()
    out["base_bf16"] = base(torch.bfloat16)
    out["sam_bf16"] = sam(dtype=torch.bfloat16)
    out["base_fp16"] = base(torch.float16)
    out["sam_fp16"] = sam(dtype=torch.float16)
    fused = name == "mlp"  # the fused low-rank path needs a model of Linear layers
    for k in SPLITS:
        if fused:
            out[f"fused/{k}"] = sam(BATCH // k, "fused")
        out[f"grouped/{k}"] = sam(BATCH // k, "grouped")  # all three models qualify
        out[f"vmap/{k}"] = sam(BATCH // k, "vmap")
        out[f"loop/{k}"] = sam(BATCH // k, "loop")
    return out


def measure(steps: dict, rounds: int, block: int) -> dict[str, float]:
    for fn in steps.values():  # warm-up: kernels, cuDNN autotuning, allocator
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(block):
                steps[name]()
            torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t0) / block)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--models", default="mlp,cnn,resnet18")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_steps.py needs a CUDA device; none is visible.", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "batch": BATCH,
              "models": {}}
    for name in args.models.split(","):
        med = measure(runners(name, device), args.rounds, args.block)

        def r(a: str, b: str, med=med) -> float:
            return round(med[a] / med[b], 3)
        result["models"][name] = {
            "ms": {k: round(v * 1e3, 3) for k, v in med.items()},
            "sam_over_base": r("sam", "base"),
            "sam_bf16_over_base_bf16": r("sam_bf16", "base_bf16"),
            "sam_fp16_over_base_fp16": r("sam_fp16", "base_fp16"),
            "msharp_vectorized_over_base": {str(k): r(f"vmap/{k}", "base") for k in SPLITS},
            "msharp_loop_over_base": {str(k): r(f"loop/{k}", "base") for k in SPLITS},
            "msharp_vectorized_over_loop": {str(k): r(f"vmap/{k}", f"loop/{k}") for k in SPLITS},
        }
        for path in ("fused", "grouped"):
            if f"{path}/2" in med:
                result["models"][name][f"msharp_{path}_over_base"] = {
                    str(k): r(f"{path}/{k}", "base") for k in SPLITS}
                result["models"][name][f"msharp_{path}_over_loop"] = {
                    str(k): r(f"{path}/{k}", f"loop/{k}") for k in SPLITS}
        print(f"{name}: {json.dumps(result['models'][name])}", file=sys.stderr, flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
