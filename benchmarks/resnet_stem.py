"""What the ResNet-18 stem costs on images over 32 px: samtune's sized stem vs the CIFAR stem.

    python benchmarks/resnet_stem.py [--side 64] [--batch 64] [--rounds 5] [--json]

samtune's default model for images whose shorter side is over 32 px is ResNet-18 with a stem
sized to the images (``samtune/models/resnet.py``: a stride-2 3x3 stem for 33-64 px, the
ImageNet stem above). Before, every size got the CIFAR stem (3x3, stride 1, no max-pool), which
runs the first residual stage at full resolution. This script times one SGD training step
(forward, cross-entropy, backward, ``torch.optim.SGD(momentum=0.9).step()``) of both on random
images, interleaved round by round (the order alternates), and prints the median step times
and their ratio, measured side by side in one run. CPU, torch's default thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from samtune.models import build_model


def cifar_stem_resnet18(shape: tuple[int, int, int], classes: int) -> nn.Module:
    """samtune's resnet18 with the CIFAR stem at every size (what it built before)."""
    model = build_model("resnet18", (shape[0], 32, 32), classes)  # the CIFAR stem
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, nn.Identity)
    return model  # fully convolutional up to the adaptive pooling: any input size works


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="steps per timed block")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    torch.manual_seed(0)
    shape = (3, args.side, args.side)
    x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
    models = {"sized": build_model("resnet18", shape, 10), "cifar": cifar_stem_resnet18(shape, 10)}
    for model in models.values():
        step_time(model, x, y, 1)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            times[name].append(step_time(models[name], x, y, args.steps))
    med = {name: statistics.median(t) for name, t in times.items()}
    result = {"side": args.side, "batch": args.batch, "threads": torch.get_num_threads(),
              "rounds": args.rounds, "median_step_s": med,
              "cifar_over_sized": med["cifar"] / med["sized"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"ResNet-18, {args.side} px, batch {args.batch}, {result['threads']} threads, "
              f"median of {args.rounds} rounds x {args.steps} steps")
        for name, t in med.items():
            print(f"  {name:<6} stem: {t:.3f} s per SGD step")
        print(f"  CIFAR stem / sized stem: {result['cifar_over_sized']:.2f}x")


if __name__ == "__main__":
    main()
