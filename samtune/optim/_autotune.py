"""``msharp="auto"``: time the m-sharpness implementations on the live model, keep the fastest.

Three implementations compute the same update: the micro-batch loop (always possible), the
torch.func vectorized path (most models) and the fused low-rank path (models made of Linear
layers). Which is fastest depends on the model, the number of micro-batches k and the hardware,
so it is measured: for each k the first steps take turns among the candidates, then the fastest
median wins for that k.
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
        self.candidates: dict[int, list[str]] = {}
        self.times: dict[int, dict[str, list[float]]] = {}
        self.choice: dict[int, str] = {}

    def choose(self, k: int, candidates: Callable[[], list[str]]) -> str:
        """The implementation for this step; ``candidates()`` lists the possible ones, loop last."""
        if k in self.choice:
            return self.choice[k]
        if k not in self.candidates:
            self.candidates[k] = candidates()
            self.times[k] = {name: [] for name in self.candidates[k]}
        names = self.candidates[k]
        if len(names) == 1:  # nothing to compare: only the loop can reproduce the update
            self.choice[k] = names[0]
            return names[0]
        return min(names, key=lambda name: len(self.times[k][name]))  # the least timed

    def drop(self, impl: str) -> None:
        """Stop considering ``impl`` (it failed on this model) for every k."""
        for k, names in self.candidates.items():
            if impl in names:
                names.remove(impl)
                self.times[k].pop(impl, None)
                if self.choice.get(k) == impl:
                    del self.choice[k]

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
