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

import copy
import json
import sys
from pathlib import Path

import torch.nn.functional as F

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import _interleaved  # noqa: E402

MS = (32, 16, 8)


def main(argv: list[str] | None = None) -> int:
    args = _interleaved.parse_args(__doc__, argv, lambda p: p.add_argument(
        "--variant", default="asam", choices=("asam", "asam-obf")))
    if args is None:
        return 2

    from samtune.optim import SAMConfig, _msharp_linear, build_optimizer

    init, x, y = _interleaved.default_mlp()
    kwargs = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    shipped = _msharp_linear.KEEP_MB

    def fused(m: int, keep: float):
        model = copy.deepcopy(init)
        opt = build_optimizer(model, SAMConfig(variant=args.variant, rho=1.0, m=m, base_kwargs=kwargs),
                              msharp="fused")

        def step() -> None:
            _msharp_linear.KEEP_MB = keep
            opt.train_step(model, x, y, F.cross_entropy)
        return step

    cells = {"base": _interleaved.sgd_step(copy.deepcopy(init), x, y, **kwargs)}
    for m in MS:
        cells[f"kept {m}"] = fused(m, shipped)
        cells[f"fresh {m}"] = fused(m, 0.0)
    try:  # warm-up included: the kept buffers are made there
        med = _interleaved.medians(cells, args.rounds, args.steps, warmup=3)
    finally:
        _msharp_linear.KEEP_MB = shipped
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
