"""What the side-by-side step timings share (``randsam_floor.py``, ``asam_buffers.py``): their
arguments, samtune's default MLP on one thread, a plain torch SGD step, and interleaved rounds
(each job timed once per round, so load that comes and goes hits all of them alike)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def add_arguments(p: argparse.ArgumentParser, rounds: int = 15, steps: int = 20) -> None:
    p.add_argument("--rounds", type=int, default=rounds, help=f"interleaved rounds (default {rounds})")
    p.add_argument("--steps", type=int, default=steps, help=f"calls per timed block (default {steps})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def parse_args(doc: str, argv: list[str] | None,
               add: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace | None:
    """The script's arguments (``add_arguments``' and ``add``'s), its description the first
    paragraph of ``doc``; None after a one-line error when they are out of range."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_arguments(p)
    if add is not None:
        add(p)
    args = p.parse_args(argv)
    return None if bad_arguments(args) else args


def bad_arguments(args: argparse.Namespace) -> bool:
    """True (after a one-line error) when --rounds or --steps is below 1."""
    if args.rounds < 1 or args.steps < 1:
        print("error: --rounds and --steps must be >= 1", file=sys.stderr)
        return True
    return False


def default_mlp() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """samtune's default MLP on 40 features (40-256-256-10) and one batch of 128, on one
    thread, seeded."""
    from samtune.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("mlp", (40,), 10)
    return model, torch.randn(128, 40), torch.randint(0, 10, (128,))


def sgd_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, **sgd: float) -> Callable[[], None]:
    """One plain torch SGD step (forward, backward, update) on ``model``."""
    opt = torch.optim.SGD(model.parameters(), **sgd)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def medians(jobs: dict[str, Callable[[], object]], rounds: int, steps: int,
            warmup: int = 1) -> dict[str, float]:
    """Each job's median seconds per call over ``rounds`` interleaved blocks of ``steps``
    calls, after ``warmup`` untimed calls each."""
    for fn in jobs.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, fn in jobs.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(v) for name, v in times.items()}
