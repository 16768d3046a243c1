"""Fused m-sharpness for Linear models against the loop and the torch.func path, on CPU.

On the MLP 64-256-256-10 of ``step_overhead.py`` at batch 128 (synthetic data), the median time
of one training step of:

- ``base``: a plain torch SGD step (zero_grad, forward, cross-entropy, backward, step);
- ``loop/k`` and ``vmap/k``: ``train_step`` of SAM with m = 128 // k and ``msharp="loop"`` or
  ``"vmap"``, for k = B/m in 2, 4, 8, 16;
- ``fused/k``: ``samtune.optim._msharp_linear.fused_pass``, its final gradient handed to
  ``p.grad``, then the base optimizer's step (what ``train_step`` would do with it).

Timing reuses ``step_overhead.py``: every configuration has its own model (same initial weights),
blocks of ``--steps`` steps are timed in shuffled rounds, blocks during which other processes
kept a CPU busy (/proc/pressure/cpu) are left out of the medians when enough quiet ones remain,
and every ratio is between medians of the same run. One torch thread unless ``--threads``.

    python benchmarks/msharp_linear.py            # table
    python benchmarks/msharp_linear.py --json     # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from samtune.optim import SAMConfig, build_optimizer
from samtune.optim._msharp_linear import fused_pass, supported

sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_overhead.py: a sibling script
import step_overhead as bench  # noqa: E402

SPLITS = (2, 4, 8, 16)
SPEC = bench.ModelSpec("mlp", bench.build_mlp, (64,), steps=8)
TARGETS = {"fused_over_base": 2.6, "fused_over_loop": 0.5}  # at B/m = 8


def make_fused_runner(init, data, k: int) -> bench.Runner:
    model = copy.deepcopy(init)
    model.train()
    base_kwargs = {"lr": bench.LR, "momentum": bench.MOMENTUM, "weight_decay": bench.WEIGHT_DECAY}
    cfg = SAMConfig(variant="sam", rho=bench.RHO, m=bench.BATCH // k, base_kwargs=base_kwargs)
    opt = build_optimizer(model, cfg)
    assert supported(opt, model)
    params = opt._params()
    counter = iter(range(10**12))

    def step() -> None:
        x, y = data[next(counter) % len(data)]
        _, final = fused_pass(opt, model, x, y, F.cross_entropy, k, nullcontext(), 1.0)
        for p, f in zip(params, final):
            p.grad = f
        opt.base_optimizer.step()

    return bench.Runner(SPEC.name, f"fused/{k}", step, opt, model)


def make_runners(seed: int) -> list[bench.Runner]:
    torch.manual_seed(seed)
    init = bench.build_mlp()
    data = bench.synthetic_batches(SPEC.input_shape, seed + 100)
    runners = [bench.make_runner(SPEC, "base", init, data)]
    for k in SPLITS:
        for mode in ("loop", "vmap"):
            runners.append(bench.make_runner(SPEC, f"{mode}/{k}", init, data))
        runners.append(make_fused_runner(init, data, k))
    return runners


def summarize(runners: list[bench.Runner], meta: dict) -> dict:
    quiet = all(len(bench._quiet(r)) >= bench.MIN_QUIET_BLOCKS for r in runners)
    med = {r.config: statistics.median(bench._quiet(r) if quiet else r.times) for r in runners}
    mins = {r.config: min(r.times) for r in runners}

    def ratios(times: dict[str, float]) -> dict[str, dict[str, float]]:
        return {
            str(k): {
                "fused_over_base": times[f"fused/{k}"] / times["base"],
                "fused_over_loop": times[f"fused/{k}"] / times[f"loop/{k}"],
                "fused_over_vmap": times[f"fused/{k}"] / times[f"vmap/{k}"],
                "loop_over_base": times[f"loop/{k}"] / times["base"],
                "vmap_over_base": times[f"vmap/{k}"] / times["base"],
            }
            for k in SPLITS
        }

    r = ratios(med)
    return {
        "benchmark": "msharp_linear", **meta,
        "blocks": "quiet" if quiet else "all (too few quiet blocks: noisy)",
        "blocks_used": {x.config: len(bench._quiet(x) if quiet else x.times) for x in runners},
        "median_ms": {c: v * 1e3 for c, v in med.items()},
        "min_ms": {c: v * 1e3 for c, v in mins.items()},
        "ratios": r,
        "ratios_from_min": ratios(mins),
        "targets": {key: {"value": r["8"][key], "limit": lim, "pass": r["8"][key] <= lim}
                    for key, lim in TARGETS.items()},
    }


def format_table(res: dict) -> str:
    lines = [f"fused m-sharpness, MLP 64-256-256-10, batch {bench.BATCH}, "
             f"{res['threads']} thread(s), "
             f"{res['rounds']} rounds, blocks: {res['blocks']}",
             f"base step: {res['median_ms']['base']:.3f} ms (median)", "",
             f"{'B/m':>4} {'loop ms':>8} {'vmap ms':>8} {'fused ms':>9} {'fused/base':>11} "
             f"{'fused/loop':>11} {'fused/vmap':>11} {'loop/base':>10} {'vmap/base':>10}"]
    for k in SPLITS:
        ms, r = res["median_ms"], res["ratios"][str(k)]
        lines.append(f"{k:>4} {ms[f'loop/{k}']:>8.2f} {ms[f'vmap/{k}']:>8.2f} "
                     f"{ms[f'fused/{k}']:>9.2f} {r['fused_over_base']:>11.2f} "
                     f"{r['fused_over_loop']:>11.2f} {r['fused_over_vmap']:>11.2f} "
                     f"{r['loop_over_base']:>10.2f} {r['vmap_over_base']:>10.2f}")
    lines.append("")
    for key, t in res["targets"].items():
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {key}[B/m=8] "
                     f"{t['value']:.2f} <= {t['limit']}")
    fm = res["ratios_from_min"]["8"]
    lines.append(f"  cross-check from minima at B/m=8: fused/base {fm['fused_over_base']:.2f}, "
                 f"fused/loop {fm['fused_over_loop']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    p.add_argument("--steps", type=int, default=8, help="steps per timed block (default 8)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per config (default 3)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="stop timing after the round that passes this many seconds (default 60)")
    p.add_argument("--max-wait", type=float, default=5.0,
                   help="seconds to wait for a quiet machine before a round (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("threads", "rounds", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, but got {getattr(args, name)}.")
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    runners = make_runners(args.seed)
    rounds, waited = bench.run_rounds(runners, {SPEC.name: args.steps}, args.rounds,
                                      args.warmup, args.seed, args.max_seconds, args.max_wait, log)
    meta = {"torch": torch.__version__, "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "batch": bench.BATCH, "rounds": rounds,
            "steps": args.steps, "seed": args.seed, "seconds_waited_for_quiet": waited,
            "wall_s": time.perf_counter() - started}
    res = summarize(runners, meta)
    print(json.dumps(res) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
