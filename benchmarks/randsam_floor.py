"""What randsam's m-sharpness must pay before any pass: its Gaussian draws, against a base step.

randsam perturbs each micro-batch of m examples with its own direction n ~ N(0, I) over every
perturbed parameter (``samtune.optim._perturb.random_direction``): k = B / m draws of the
parameter count per step, whatever path computes the two passes. Two passes already cost about
2 base steps, so when the draws alone cost more than 0.6 of a base step, randsam at that m
cannot meet ``<= 2.6x the base step`` (issue 16) with this definition of the variant.

This script times, side by side in interleaved rounds on one thread, samtune's default MLP
(``build_model("mlp", (40,), 10)``, batch 128, the size the search uses on 40 features):

- ``base``: one plain torch SGD step (forward, backward, update);
- ``draws k``: ``random_direction(params, k)`` for k = 4, 8, 16 (m = 32, 16, 8);
- ``one call k``: the same number of normals drawn by a single ``torch.randn`` (the cheapest
  any implementation can draw them with torch's generator).

    python benchmarks/randsam_floor.py              # 15 rounds, prints medians and ratios
    python benchmarks/randsam_floor.py --rounds 5 --json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import _interleaved  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = _interleaved.parse_args(__doc__, argv)
    if args is None:
        return 2

    from samtune.optim._perturb import random_direction

    model, x, y = _interleaved.default_mlp()
    params = [q for q in model.parameters() if q.requires_grad]
    n_params = sum(q.numel() for q in params)
    gen = torch.Generator().manual_seed(0)

    jobs = {"base": _interleaved.sgd_step(model, x, y, lr=0.01, momentum=0.9)}
    for k in (4, 8, 16):
        jobs[f"draws {k}"] = lambda k=k: random_direction(params, k, gen)
        jobs[f"one call {k}"] = lambda k=k: torch.randn(k * n_params, generator=gen)
    med = _interleaved.medians(jobs, args.rounds, args.steps)
    ratio = {name: med[name] / med["base"] for name in med}
    result = {"model": "mlp 40-256-256-10, batch 128", "n_params": n_params,
              "rounds": args.rounds, "median_s": med, "over_base": ratio,
              "torch": torch.__version__}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"default MLP ({n_params} parameters), batch 128, one thread, median of "
          f"{args.rounds} interleaved rounds")
    for name in jobs:
        print(f"  {name:<12} {1e3 * med[name]:8.3f} ms   {ratio[name]:5.2f}x base")
    for k, m in ((4, 32), (8, 16), (16, 8)):
        floor = 2.0 + ratio[f"draws {k}"]
        print(f"  m={m:<3} (k={k:>2}): two passes + draws >= {floor:.2f}x base "
              f"(one-call draws: {2.0 + ratio[f'one call {k}']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
