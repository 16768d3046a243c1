"""``msharp="auto"``: time the micro-batch loop and the vectorized path, keep the faster.

Neither wins everywhere (it depends on the model, the number of micro-batches and the
hardware), and both compute the same update, so the choice is measured on the live model:
the first steps alternate between the two, then the faster median wins for that k.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

AUTOTUNE_STEPS = 3  # timed steps per implementation (after one warm-up each) before settling


class MsharpChooser:
    """Per number of micro-batches k: which implementation to run next, and what it learned."""

    def __init__(self) -> None:
        self.times: dict[int, dict[str, list[float]]] = {}
        self.choice: dict[int, str] = {}

    def choose(self, k: int, vmap_possible: Callable[[], bool]) -> str:
        if k in self.choice:
            return self.choice[k]
        if not vmap_possible():  # vectorizing cannot help or cannot reproduce the loop
            self.choice[k] = "loop"
            return "loop"
        times = self.times.setdefault(k, {"vmap": [], "loop": []})
        return "vmap" if len(times["vmap"]) <= len(times["loop"]) else "loop"

    def clock(self, inputs: torch.Tensor, k: int) -> float | None:
        """A start time while k is still being timed, else None."""
        if k == 1 or k in self.choice:
            return None
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)
        return time.perf_counter()

    def record(self, inputs: torch.Tensor, k: int, impl: str, t0: float) -> None:
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)
        times = self.times[k]
        times[impl].append(time.perf_counter() - t0)
        if min(len(v) for v in times.values()) >= AUTOTUNE_STEPS + 1:
            med = {name: statistics.median(v[1:]) for name, v in times.items()}
            self.choice[k] = min(med, key=med.get)
