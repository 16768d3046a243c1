"""Where samtune's fused m-sharpness step spends its time, part by part.

Each part of the fused path (``samtune/optim/_msharp_linear.py``) is wrapped with a timer for the
run and restored after it: both ``torch.autograd.grad`` calls (the clean backward to the Linear
outputs, and the perturbed backward), the model's two forwards (the low-rank corrections and the
hooks within them), the shifts, the micro-batch losses and the base optimizer's update. On
samtune's default MLP (batch 128, one thread), next to a plain torch SGD step timed in the same
process. The wrappers add a few microseconds per call; the parts are a guide, the step total is
the same quantity the step table measures.

    python benchmarks/fused_breakdown.py                 # sam, m = 8, 400 steps
    python benchmarks/fused_breakdown.py --variant asam --m 16 --json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import _interleaved  # noqa: E402

PARTS = ("_directions", "_low_rank_shifts", "_adaptive_shifts", "_micro_losses", "_correction")


@contextlib.contextmanager
def timed_parts(spent: dict[str, float], model: torch.nn.Module, opt) -> Iterator[None]:
    """Wrap the fused path's parts, the model's forward, autograd.grad and the base update."""
    from samtune.optim import _msharp_linear

    def wrap(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t0
        saved.append((owner, name, original))
        setattr(owner, name, timed)

    saved: list = []
    try:
        for name in PARTS:
            wrap(_msharp_linear, name, name)
        wrap(torch.autograd, "grad", "autograd.grad")
        wrap(model, "forward", "model forward")
        wrap(opt.base_optimizer, "step", "base update")
        yield
    finally:
        for owner, name, original in reversed(saved):
            if owner is model or owner is opt.base_optimizer:
                owner.__dict__.pop(name, None)
            else:
                setattr(owner, name, original)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="sam", help="a SAM-family variant (default sam)")
    p.add_argument("--m", type=int, default=8, help="micro-batch size (default 8)")
    p.add_argument("--steps", type=int, default=400, help="timed steps (default 400)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if args.steps < 1 or args.m < 1:
        print("error: --steps and --m must be >= 1", file=sys.stderr)
        return 2

    from samtune.errors import ConfigError
    from samtune.optim import SAMConfig, build_optimizer, get_variant

    try:
        spec = get_variant(args.variant)
    except ConfigError as err:  # its message names the choices
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not spec.perturbs:
        print(f"error: --variant {args.variant} does not perturb; choose a SAM-family variant",
              file=sys.stderr)
        return 2
    model, x, y = _interleaved.default_mlp()
    plain = copy.deepcopy(model)
    base = _interleaved.sgd_step(plain, x, y, lr=0.01, momentum=0.9)
    rho = 1.0 if spec.adaptive else 0.05
    opt = build_optimizer(model, SAMConfig(variant=args.variant, rho=rho, m=args.m,
                                           base_kwargs={"lr": 0.01, "momentum": 0.9}),
                          msharp="fused")
    for _ in range(30):
        base()
        opt.train_step(model, x, y, F.cross_entropy)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        base()
    base_s = (time.perf_counter() - t0) / args.steps
    spent: dict[str, float] = collections.defaultdict(float)
    with timed_parts(spent, model, opt):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            opt.train_step(model, x, y, F.cross_entropy)
        step_s = (time.perf_counter() - t0) / args.steps
    parts = {k: v / args.steps for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
    result = {"variant": args.variant, "m": args.m, "steps": args.steps,
              "base_s": base_s, "step_s": step_s, "parts_s": parts, "torch": torch.__version__}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.variant} m={args.m}, default MLP, batch 128, one thread, {args.steps} steps: "
          f"step {1e3 * step_s:.3f} ms, base {1e3 * base_s:.3f} ms ({step_s / base_s:.2f}x)")
    for name, s in parts.items():
        print(f"  {name:<18} {1e3 * s:7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
