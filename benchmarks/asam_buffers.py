"""ASAM's fused m-sharpness step with its per-micro-batch weight buffers kept between steps,
against the same step allocating them afresh, side by side.

The fused Linear path (``samtune/optim/_msharp_linear.py``) forms every micro-batch's weight
gradient G_j for ASAM: k = B / m tensors the size of each weight. Since 2026-12-03 they are
written into buffers kept in the optimizer's cache (``_weight_buffer``, up to ``KEEP_MB``);
before, each step allocated them. This script times, in interleaved rounds on one thread,
samtune's default MLP (``build_model("mlp", (40,), 10)``, batch 128):

- ``base``: one plain torch SGD step;
- ``kept m``: the fused asam step at m (``KEEP_MB`` as shipped);
- ``fresh m``: the same step with ``KEEP_MB = 0`` (nothing kept: the earlier behaviour).

    python benchmarks/asam_buffers.py               # 15 rounds, prints x base per cell
    python benchmarks/asam_buffers.py --rounds 5 --json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

MS = (32, 16, 8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--steps", type=int, default=20, help="steps per timed block (default 20)")
    p.add_argument("--variant", default="asam", choices=("asam", "asam-obf"))
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        print("error: --rounds and --steps must be >= 1", file=sys.stderr)
        return 2

    from samtune.models import build_model
    from samtune.optim import SAMConfig, _msharp_linear, build_optimizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    init = build_model("mlp", (40,), 10)
    x, y = torch.randn(128, 40), torch.randint(0, 10, (128,))
    kwargs = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    shipped = _msharp_linear.KEEP_MB

    base_model = copy.deepcopy(init)
    base_opt = torch.optim.SGD(base_model.parameters(), **kwargs)

    def base() -> None:
        base_opt.zero_grad(set_to_none=True)
        F.cross_entropy(base_model(x), y).backward()
        base_opt.step()

    def fused(m: int, keep: float):
        model = copy.deepcopy(init)
        opt = build_optimizer(model, SAMConfig(variant=args.variant, rho=1.0, m=m, base_kwargs=kwargs),
                              msharp="fused")

        def step() -> None:
            _msharp_linear.KEEP_MB = keep
            opt.train_step(model, x, y, F.cross_entropy)
        return step

    cells = {"base": base}
    for m in MS:
        cells[f"kept {m}"] = fused(m, shipped)
        cells[f"fresh {m}"] = fused(m, 0.0)
    for fn in cells.values():  # warm up (the kept buffers are made here)
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cells}
    for _ in range(args.rounds):
        for name, fn in cells.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - t0) / args.steps)
    _msharp_linear.KEEP_MB = shipped
    med = {name: statistics.median(v) for name, v in times.items()}
    ratios = {name: med[name] / med["base"] for name in cells}
    result = {"variant": args.variant, "rounds": args.rounds, "base_ms": med["base"] * 1e3,
              "x_base": ratios, "kept_over_fresh": {m: med[f"kept {m}"] / med[f"fresh {m}"] for m in MS}}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.variant}, default MLP, batch 128, one thread, {args.rounds} interleaved rounds "
          f"(base step {result['base_ms']:.2f} ms)")
    print("| m | kept: x base | fresh: x base | kept / fresh |")
    print("|---|---|---|---|")
    for m in MS:
        print(f"| {m} | {ratios[f'kept {m}']:.2f} | {ratios[f'fresh {m}']:.2f} | "
              f"{result['kept_over_fresh'][m]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
