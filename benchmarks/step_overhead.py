"""Step overhead of the SAM-family engine on CPU, measured side by side in one run.

For two models at batch 128 (an MLP on 64 features, like the digits set, and a small CNN with
BatchNorm on 1x8x8 images), the median time of one training step of:

- ``base``: a plain torch loop (zero_grad, forward, cross-entropy, backward,
  ``torch.optim.SGD(momentum=0.9).step()``);
- ``sgd``: samtune's ``sgd`` baseline variant through ``optimizer.train_step``;
- ``sam``: SAM with ``m=None`` (the whole batch) through ``train_step``;
- ``fused/k``, ``grouped/k``, ``vmap/k`` and ``loop/k``: m-sharpness with k = B/m in 2, 4, 8,
  16 micro-batches (m = 128 // k), with ``msharp="fused"`` (low-rank, Linear-only models: the
  MLP), ``msharp="grouped"`` (grouped convolutions and batched matmuls: both models),
  ``msharp="vmap"`` (torch.func) and ``msharp="loop"`` (the reference). The "vectorized"
  ratios take, per model and k, the fastest of fused, grouped and vmap: the one
  ``msharp="auto"`` keeps.

Every configuration has its own model (same seeded initial weights) and optimizer. After a
warm-up, the run goes ``--rounds`` times over every (model, configuration) pair in a shuffled
order and times a block of ``--steps`` steps of each; a configuration's step time is the median
of its blocks' per-step times, and every ratio is taken between medians of the same run, so slow
phases of a shared machine hit all configurations alike. The torch thread count is left as the
machine sets it unless ``--threads`` says otherwise.

A shared 2-core machine needs more than interleaving: while another process runs, a 2-thread
torch step gets several times slower. Each block therefore records the CPU pressure stall
(/proc/pressure/cpu) during it; the medians use only quiet blocks, a noisy block is retried once
the machine is quiet again, and a model whose configurations lack quiet blocks is flagged (its
verdicts print with a "?"). ``--max-seconds`` bounds the timing phase.

The variant table (issue: m-sharpness for every variant) times samtune's own default models at
the batch sizes the search uses: the default MLP on 40 tabular features at batch 128
(``samtune.models.mlp``: 40-256-256-10) and the default CNN on 1x8x8 images at batch 64
(``samtune.models.cnn``, BatchNorm), every variant x m in {None, 32, 16, 8} through
``msharp="auto"`` (warmed up until auto has settled), next to the base step, steps whose rho is
0 (sam, m=None and m=8) and the perturbation schedules (stochastic p=0.25, periodic every 4, late
before its start). ``--only paths`` / ``--only variants`` runs one of the two tables.

Then the training loop's two ratios, from ``train_overhead.py`` (builtin:digits, the default
CNN, one thread): the SAM step with samtune's per-step forgetting-metrics work over the SAM step
alone, and one epoch of ``samtune.train.train`` over a hand-written PyTorch epoch
(``--no-training`` skips them).

Peak memory: the process's peak RSS (``resource.getrusage``), plus, per configuration, the peak
of torch's CPU allocator during one step measured with ``torch.profiler(profile_memory=True)``
(the vmap path's stacked micro-batch tensors show up there), next to the engine's own estimate
of the stacked tensors.

    python benchmarks/step_overhead.py              # table; JSON to benchmarks/results/
    python benchmarks/step_overhead.py --json       # one JSON object on stdout
    python benchmarks/step_overhead.py --quick --json   # seconds; for smoke tests
    python benchmarks/step_overhead.py --breakdown  # the pieces of a SAM and a B/m=8 step
    python benchmarks/step_overhead.py --profile cnn:vmap/8   # torch.profiler of one config
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import gc
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from samtune.optim import SAMConfig, build_optimizer

BATCH = 128
SPLITS = (2, 4, 8, 16)  # B/m: micro-batches per batch
LR, MOMENTUM, WEIGHT_DECAY, RHO = 0.05, 0.9, 5e-4, 0.05  # same base settings for every config
MIN_ROUNDS = 3  # a time budget never cuts a run below this many rounds
BLOCK_RETRIES = 2  # a block timed while other processes were busy is retried up to this often
QUIET_STALL = 0.1  # a block is quiet when tasks waited for a CPU less than this share of it
QUIET_CORES = 0.25  # before a round or a retry, wait until other processes use less CPU than this
MIN_QUIET_BLOCKS = 3  # per config; with fewer, a model's medians fall back to all blocks
N_BATCHES = 4  # synthetic batches cycled through, so no config reuses one tensor forever
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "step_overhead.json"
TARGETS = (  # (JSON key, B/m or None, limit): the acceptance targets
    ("sam_over_base", None, 2.1),
    ("msharp_vectorized_over_base", "8", 2.6),
    ("msharp_vectorized_over_loop", "8", 0.5),
)
TRAINING_TARGETS = (  # measured by train_overhead.py on builtin:digits with the default CNN
    ("metrics_over_step", 1.03),
    ("loop_over_handwritten", 1.10),
)


# -- models and data ---------------------------------------------------------------------------


def build_mlp() -> nn.Module:
    """64 -> 256 -> 256 -> 10, ReLU: an MLP on digits-like features (85k parameters)."""
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )


def build_cnn() -> nn.Module:
    """Three 3x3 conv blocks (32, 64, 64 channels) with BatchNorm on 1x8x8 images (57k parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


@dataclass
class ModelSpec:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    steps: int  # default steps per timed block (so a base block lasts a few tens of ms)


MODELS = (
    ModelSpec("mlp", build_mlp, (64,), steps=24),
    ModelSpec("cnn", build_cnn, (1, 8, 8), steps=3),
)


def synthetic_batches(shape: tuple[int, ...], seed: int,
                      batch: int = BATCH) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, *shape, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
        for _ in range(N_BATCHES)
    ]


# -- the variant table: samtune's default models, every variant x m -----------------------------

VARIANT_MS = (None, 32, 16, 8)
VARIANT_TARGETS = (  # (JSON key, limit): the acceptance targets for the variant table
    ("variant_m_over_base", 2.6),
    ("variant_m_over_m_none", 1.25),
    ("rho0_over_base", 1.05),
    ("stochastic_p025_over_base", 1.35),
)
SCHEDULES = {  # config name -> SAMConfig fields of a sam step (m=None) under a perturbation schedule
    "sched:stochastic-0.25": {"perturb": "stochastic", "perturb_kwargs": {"p": 0.25, "seed": 0}},
    "sched:periodic-4": {"perturb": "periodic", "perturb_kwargs": {"every": 4}},
    "sched:late-before-start": {"perturb": "late",
                                "perturb_kwargs": {"start": 1.0, "total_steps": 10**9}},
}


@dataclass
class VariantModel:
    name: str  # the key in variant_m_over_base: samtune's model name
    key: str  # the runners' model_name (distinct from the path table's models)
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    batch: int
    steps: int  # steps per timed block: a multiple of 4, so periodic-4 blocks hold 1/4 on-steps


def _default_mlp() -> nn.Module:
    from samtune.models import build_model
    return build_model("mlp", (40,), 10)


def _default_cnn() -> nn.Module:
    from samtune.models import build_model
    return build_model("cnn", (1, 8, 8), 10)


VARIANT_MODELS = (
    VariantModel("mlp", "default-mlp", _default_mlp, (40,), 128, steps=24),
    VariantModel("cnn", "default-cnn", _default_cnn, (1, 8, 8), 64, steps=8),
)


def variant_config_names(quick: bool = False) -> list[str]:
    """The variant table's configurations; a quick run (smoke test) takes m in {None, 8} only."""
    from samtune.optim import list_variants

    ms = (None, 8) if quick else VARIANT_MS
    names = ["v:base"]
    names += [f"v:{v}/{m}" for v in list_variants() for m in ms if v != "sgd" or m is None]
    return names + ["rho0:sam/None", "rho0:sam/8", *SCHEDULES]


def make_variant_runner(spec: VariantModel, config: str, init: nn.Module, data) -> Runner:
    base_kwargs = {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    if config == "v:base":
        runner = make_runner(ModelSpec(spec.key, spec.build, spec.input_shape, spec.steps),
                             "base", init, data)
        runner.config = config
        return runner
    kind, _, rest = config.partition(":")
    fields: dict[str, Any] = {"base_kwargs": base_kwargs}
    if kind == "sched":
        fields.update(variant="sam", rho=RHO, **SCHEDULES[config])
    else:
        variant, m = rest.split("/")
        fields.update(variant=variant, rho=0.0 if kind == "rho0" else RHO,
                      m=None if m == "None" else int(m))
    model = copy.deepcopy(init)
    model.train()
    opt = build_optimizer(model, SAMConfig(**fields), msharp="auto",
                          generator=torch.Generator().manual_seed(0))
    counter = iter(range(10**12))
    perturbed = [0, 0]  # steps that perturbed, steps taken

    def step() -> None:
        x, y = data[next(counter) % len(data)]
        out = opt.train_step(model, x, y, F.cross_entropy)
        perturbed[0] += out.perturbed_loss is not None
        perturbed[1] += 1

    runner = Runner(spec.key, config, step, opt, model)
    runner.perturbed = perturbed  # type: ignore[attr-defined]
    return runner


def make_variant_runners(seed: int, quick: bool = False) -> list[Runner]:
    runners = []
    for i, spec in enumerate(VARIANT_MODELS):
        torch.manual_seed(seed + 10 + i)
        init = spec.build()
        data = synthetic_batches(spec.input_shape, seed + 110 + i, spec.batch)
        runners += [make_variant_runner(spec, c, init, data) for c in variant_config_names(quick)]
    return runners


def settle_auto(runners: list[Runner], max_steps: int = 40) -> None:
    """Step each m-sharpness runner until ``msharp="auto"`` has chosen its path (its timing
    phase runs the loop and the other candidates), at most ``max_steps`` steps."""
    for r in runners:
        if not r.config.startswith("v:") or r.config.endswith("/None") or r.config == "v:base":
            continue
        for _ in range(max_steps):
            if r.optimizer.msharp_choice:
                break
            r.step()


def summarize_variants(runners: list[Runner]) -> dict[str, Any]:
    """variant_m_over_base {model: {variant: {m: ratio}}} and the other variant-table ratios."""
    out: dict[str, Any] = {key: {} for key, _ in VARIANT_TARGETS}
    out.update(paths={}, median_ms={}, blocks={}, perturbed_share={}, models={})
    for spec in VARIANT_MODELS:
        mine = {r.config: r for r in runners if r.model_name == spec.key}
        if not mine:
            continue
        quiet = all(len(_quiet(r)) >= MIN_QUIET_BLOCKS for r in mine.values())
        med = {c: statistics.median(_quiet(r) if quiet else r.times) for c, r in mine.items()}
        base = med["v:base"]
        ratios: dict[str, dict[str, float]] = {}
        over_none: dict[str, dict[str, float]] = {}
        paths: dict[str, dict[str, str]] = {}
        for c, r in mine.items():
            if not c.startswith("v:") or c == "v:base":
                continue
            variant, m = c[2:].split("/")
            ratios.setdefault(variant, {})[m] = _ratio(med[c], base)
            if m != "None":
                over_none.setdefault(variant, {})[m] = _ratio(med[c], med[f"v:{variant}/None"])
                paths.setdefault(variant, {})[m] = ",".join(
                    f"{k}:{v}" for k, v in sorted(r.optimizer.msharp_choice.items())) or "?"
        name = spec.name
        out["variant_m_over_base"][name] = ratios
        out["variant_m_over_m_none"][name] = over_none
        out["rho0_over_base"][name] = {c.split(":")[1]: _ratio(med[c], base)
                                       for c in mine if c.startswith("rho0:")}
        out["stochastic_p025_over_base"][name] = _ratio(med["sched:stochastic-0.25"], base)
        out["schedules_over_base"] = out.get("schedules_over_base", {})
        out["schedules_over_base"][name] = {c.split(":")[1]: _ratio(med[c], base)
                                            for c in mine if c.startswith("sched:")}
        out["paths"][name] = paths
        out["median_ms"][name] = {c: v * 1e3 for c, v in med.items()}
        out["blocks"][name] = "quiet" if quiet else "all (too few quiet blocks: noisy)"
        out["perturbed_share"][name] = {
            c: r.perturbed[0] / max(1, r.perturbed[1]) for c, r in mine.items()
            if hasattr(r, "perturbed") and c.startswith("sched:")}
        out["models"][name] = {"input_shape": list(spec.input_shape), "batch": spec.batch,
                               "steps_per_block": spec.steps,
                               "params": sum(p.numel() for p in mine["v:base"].model.parameters())}
    return out


def _flat(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flat(item)]
    return [value]


def check_variant_targets(variants: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Each variant-table target on its worst cell, per model (a quick run decides nothing)."""
    out = []
    for key, limit in VARIANT_TARGETS:
        for model, detail in variants[key].items():
            cells = _flat(detail)
            value = max(cells) if cells else float("nan")
            out.append({"target": f"{key} (worst cell)", "model": model, "value": value,
                        "limit": limit, "pass": bool(value <= limit),
                        "reliable": variants["blocks"][model] == "quiet" and not quick})
    return out


def format_variant_table(variants: dict[str, Any]) -> str:
    lines = ["variant table: x base step (median / median), samtune's default models, "
             "msharp='auto' (its path per k in brackets)"]
    for model, table in variants["variant_m_over_base"].items():
        d = variants["models"][model]
        lines.append("")
        lines.append(f"{model} (input {tuple(d['input_shape'])}, batch {d['batch']}, "
                     f"{d['params']} parameters; blocks used: {variants['blocks'][model]})")
        lines.append(f"  {'variant':<10}" + "".join(f"{'m=' + str(m):>10}" for m in VARIANT_MS)
                     + "   x m=None at m=32/16/8   path at m=32/16/8")
        for variant, row in table.items():
            cells = "".join(f"{row[str(m)]:>10.2f}" if str(m) in row else f"{'':>10}"
                            for m in VARIANT_MS)
            rel = variants["variant_m_over_m_none"][model].get(variant, {})
            rel_s = "/".join(f"{rel[str(m)]:.2f}" for m in VARIANT_MS[1:] if str(m) in rel)
            path = variants["paths"][model].get(variant, {})
            path_s = " ".join(path[str(m)] for m in VARIANT_MS[1:] if str(m) in path)
            lines.append(f"  {variant:<10}{cells}   {rel_s:<22}  {path_s}")
        rho0 = ", ".join(f"{k} {v:.2f}" for k, v in variants["rho0_over_base"][model].items())
        lines.append(f"  rho=0 steps / base: {rho0}")
        share = variants["perturbed_share"][model]
        sched = ", ".join(f"{k} {v:.2f} (perturbed share {share.get('sched:' + k, float('nan')):.2f})"
                          for k, v in variants["schedules_over_base"][model].items())
        lines.append(f"  schedules (sam, m=None) / base: {sched}")
    lines.append("")
    lines.append("variant-table targets (worst cell per model):")
    for t in variants["targets"]:
        verdict = ("PASS" if t["pass"] else "FAIL") + ("" if t["reliable"] else "?")
        lines.append(f"  {verdict}  {t['target']:<40} {t['model']:<6} {t['value']:.2f} <= {t['limit']}")
    return "\n".join(lines)


# -- configurations ----------------------------------------------------------------------------


VECTORIZED = ("fused", "grouped", "vmap")


def config_names(paths: tuple[str, ...] = ("vmap",)) -> list[str]:
    modes = (*paths, "loop")
    return ["base", "sgd", "sam"] + [f"{mode}/{k}" for k in SPLITS for mode in modes]


def vectorized_paths(spec: ModelSpec) -> tuple[str, ...]:
    """The engine's vectorized m-sharpness paths that apply to this model (vmap always does)."""
    from samtune.optim import _msharp_grouped, _msharp_linear

    model = spec.build()
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=RHO, m=BATCH // 2))
    ok = {"fused": _msharp_linear.supported(opt, model),
          "grouped": _msharp_grouped.supported(opt, model), "vmap": True}
    return tuple(path for path in VECTORIZED if ok[path])


def vectorized(med: dict[str, float], k: int) -> tuple[str, float]:
    """The fastest vectorized implementation at k micro-batches and its time."""
    return min(((c, med[f"{c}/{k}"]) for c in VECTORIZED if f"{c}/{k}" in med),
               key=lambda item: item[1])


@dataclass
class Runner:
    """One configuration of one model: its own model, optimizer and position in the data."""

    model_name: str
    config: str
    step: Callable[[], None]
    optimizer: Any
    model: nn.Module
    times: list[float] = field(default_factory=list)  # seconds per step, one per timed block
    stall: list[float] = field(default_factory=list)  # share of each block with tasks waiting for a CPU


def make_runner(spec: ModelSpec, config: str, init: nn.Module, data) -> Runner:
    model = copy.deepcopy(init)
    model.train()
    counter = iter(range(10**12))

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        return data[next(counter) % len(data)]

    if config == "base":
        opt: Any = torch.optim.SGD(
            model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
        )

        def step() -> None:
            x, y = batch()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        return Runner(spec.name, config, step, opt, model)

    base_kwargs = {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    if config in ("sgd", "sam"):
        cfg, msharp = SAMConfig(variant=config, rho=RHO, base_kwargs=base_kwargs), "auto"
    else:
        msharp, k = config.split("/")
        cfg = SAMConfig(variant="sam", rho=RHO, m=BATCH // int(k), base_kwargs=base_kwargs)
    opt = build_optimizer(model, cfg, msharp=msharp)

    def step() -> None:
        x, y = batch()
        opt.train_step(model, x, y, F.cross_entropy)

    return Runner(spec.name, config, step, opt, model)


def make_runners(specs, seed: int) -> list[Runner]:
    runners = []
    for i, spec in enumerate(specs):
        torch.manual_seed(seed + i)
        init = spec.build()
        data = synthetic_batches(spec.input_shape, seed + 100 + i)
        runners += [make_runner(spec, c, init, data) for c in config_names(vectorized_paths(spec))]
    return runners


# -- measurement -------------------------------------------------------------------------------


class CpuMonitor:
    """How busy the machine is besides this benchmark, from /proc (Linux; elsewhere: unknown).

    A 2-core machine shared with other jobs makes a 2-thread torch step many times slower while
    they run (a thread waits for a core at every parallel region). Two readings:

    - per block, the CPU pressure stall (/proc/pressure/cpu, "some" total, microseconds): the
      share of the block during which some runnable task waited for a CPU. Alone on the machine
      a 2-thread step stays near 0; next to another busy process it climbs towards 1. Blocks at
      or above QUIET_STALL are kept but left out of the medians, and retried once it is quiet;
    - before a round or a retry, the CPU used by other processes (/proc/stat minus this
      process, over half-second windows): the run waits, at most ``--max-wait`` seconds, until it
      is below QUIET_CORES.
    """

    def __init__(self) -> None:
        self.has_psi = self._psi() is not None
        self.has_stat = self._stat() is not None
        self.available = self.has_psi

    @staticmethod
    def _psi() -> float | None:
        try:
            with open("/proc/pressure/cpu") as fh:
                return int(fh.readline().split("total=")[1]) / 1e6
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _stat() -> tuple[float, float, float] | None:
        """(wall s, busy CPU s of the machine, CPU s of this process) or None."""
        try:
            tick = os.sysconf("SC_CLK_TCK")
            with open("/proc/stat") as fh:
                f = [int(v) for v in fh.readline().split()[1:]]
            with open("/proc/self/stat") as fh:
                mine = fh.read().rpartition(")")[2].split()
        except (OSError, ValueError, IndexError, AttributeError):
            return None
        busy = f[0] + f[1] + f[2] + sum(f[5:8])  # user nice system irq softirq steal
        return time.perf_counter(), busy / tick, (int(mine[11]) + int(mine[12])) / tick

    def read(self) -> tuple[float, float | None]:
        return time.perf_counter(), self._psi() if self.has_psi else None

    @staticmethod
    def stall(a: tuple[float, float | None], b: tuple[float, float | None]) -> float:
        """Share of the interval between readings ``a`` and ``b`` with a task waiting for a CPU."""
        if a[1] is None or b[1] is None or b[0] <= a[0]:
            return float("nan")
        return max(0.0, (b[1] - a[1]) / (b[0] - a[0]))

    def wait_quiet(self, max_wait: float, window: float = 0.5) -> float:
        """Sleep until other processes use < QUIET_CORES (or ``max_wait`` s); returns the wait."""
        start = time.perf_counter()
        while self.has_stat and time.perf_counter() - start < max_wait:
            a = self._stat()
            time.sleep(window)
            b = self._stat()
            if a is None or b is None or ((b[1] - a[1]) - (b[2] - a[2])) / (b[0] - a[0]) < QUIET_CORES:
                break
        return time.perf_counter() - start


def time_block(runner: Runner, steps: int, monitor: CpuMonitor) -> None:
    """Time one block of ``steps`` steps and record the CPU stall during it (the caller pauses
    the garbage collector: one full collection here takes ~0.3 s with every runner alive)."""
    before = monitor.read()
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    elapsed = time.perf_counter() - start
    after = monitor.read()
    runner.times.append(elapsed / steps)
    runner.stall.append(monitor.stall(before, after))


def run_rounds(runners: list[Runner], steps: dict[str, int], rounds: int, warmup: int,
               seed: int, max_seconds: float, max_wait: float,
               log: Callable[[str], None]) -> tuple[int, float]:
    """Warm up, then time ``rounds`` shuffled rounds; returns (rounds completed, seconds waited).

    Past ``max_seconds`` (a loaded machine), the run stops after the current round, but never
    before MIN_ROUNDS rounds: every configuration is timed in the same rounds.
    """
    monitor = CpuMonitor()
    rng = random.Random(seed)
    order = list(runners)
    start = time.perf_counter()
    waited = 0.0

    def left() -> float:
        return max_seconds - (time.perf_counter() - start)

    def wait() -> None:
        nonlocal waited
        waited += monitor.wait_quiet(min(max_wait, max(0.0, left())))

    for r in order:  # warm-up: first calls (vmap setup, oneDNN kernels per shape) are not timed
        for _ in range(warmup):
            r.step()
    for i in range(rounds):
        wait()
        rng.shuffle(order)
        gc.collect()  # once per round; paused while the round's blocks run
        gc.disable()
        try:
            for r in order:
                for _ in range(1 + BLOCK_RETRIES):
                    time_block(r, steps[r.model_name], monitor)
                    if not r.stall[-1] >= QUIET_STALL or max_wait <= 0 or left() <= 0:
                        break  # quiet (or unknown, or no time left): keep it and go on
                    wait()  # a noisy block: retry it in the same slot once the machine is quiet
        finally:
            gc.enable()
        elapsed = time.perf_counter() - start
        log(f"round {i + 1}/{rounds} done ({elapsed:.0f} s, {waited:.0f} s waiting for quiet)")
        if elapsed > max_seconds and i + 1 >= min(MIN_ROUNDS, rounds):
            log(f"time budget of {max_seconds:.0f} s spent: stopping after {i + 1} rounds")
            return i + 1, waited
    return rounds, waited


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence the profiler's C++ log lines (written to fd 2, not to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def step_peak_alloc_mb(runner: Runner) -> float:
    """Peak of torch's CPU allocator during one step, above its level when the step began."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            runner.step()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "trace.json")
            prof.export_chrome_trace(path)
            with open(path) as fh:
                events = json.load(fh)["traceEvents"]
    mem = [e["args"] for e in events if e.get("name") == "[memory]"]
    if not mem:
        return float("nan")
    start = mem[0]["Total Allocated"] - mem[0]["Bytes"]  # level before the first event
    return (max(a["Total Allocated"] for a in mem) - start) / 2**20


def stacked_estimate_mb(runner: Runner) -> float:
    """The engine's bound for one batched call: micro-batches per chunk x (4 x parameters +
    one micro-batch's saved activations), as ``samtune.optim._msharp.chunk_size`` sizes it."""
    from samtune.optim import _msharp  # private: read only for its chunk sizing

    k = int(runner.config.split("/")[1])
    spec = next(s for s in MODELS if s.name == runner.model_name)
    x = torch.zeros(BATCH, *spec.input_shape)
    chunk = _msharp.chunk_size(runner.optimizer, runner.model, k, x)
    param_bytes = sum(p.numel() * p.element_size() for p in runner.optimizer._params())
    saved = _msharp.saved_activation_bytes(runner.optimizer, runner.model, x[: BATCH // k])
    return chunk * (4 * param_bytes + saved) / 2**20


def rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# -- summary -----------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _quiet(r: Runner) -> list[float]:
    return [t for t, st in zip(r.times, r.stall) if st < QUIET_STALL]  # nan (unknown) is not quiet


def summarize(runners: list[Runner], specs, memory: dict[str, Any], meta: dict[str, Any]) -> dict:
    models: dict[str, Any] = {}
    for spec in specs:
        mine = {r.config: r for r in runners if r.model_name == spec.name}
        quiet = all(len(_quiet(r)) >= MIN_QUIET_BLOCKS for r in mine.values())
        used = {c: _quiet(r) if quiet else r.times for c, r in mine.items()}
        med = {c: statistics.median(t) for c, t in used.items()}
        q = {
            c: statistics.quantiles(t, n=4, method="inclusive") if len(t) > 1 else [t[0]] * 3
            for c, t in used.items()
        }
        base = med["base"]
        stall = [st for r in mine.values() for st in r.stall if st == st]
        models[spec.name] = {
            "input_shape": list(spec.input_shape),
            "params": sum(p.numel() for p in mine["base"].model.parameters()),
            "steps_per_block": meta["steps"][spec.name],
            "blocks": "quiet" if quiet else "all (too few quiet blocks: noisy)",
            "blocks_used": {c: len(t) for c, t in used.items()},
            "blocks_timed": {c: len(r.times) for c, r in mine.items()},
            "cpu_stall_median": statistics.median(stall) if stall else None,
            "median_ms": {c: v * 1e3 for c, v in med.items()},
            "median_ms_all_blocks": {c: statistics.median(r.times) * 1e3 for c, r in mine.items()},
            "p25_ms": {c: v[0] * 1e3 for c, v in q.items()},
            "p75_ms": {c: v[2] * 1e3 for c, v in q.items()},
            "min_ms": {c: min(r.times) * 1e3 for c, r in mine.items()},
            "sam_over_base": _ratio(med["sam"], base),
            "sgd_variant_over_base": _ratio(med["sgd"], base),
            "msharp_vectorized_impl": {str(k): vectorized(med, k)[0] for k in SPLITS},
            "msharp_vectorized_over_loop": {
                str(k): _ratio(vectorized(med, k)[1], med[f"loop/{k}"]) for k in SPLITS
            },
            "msharp_vectorized_over_base": {
                str(k): _ratio(vectorized(med, k)[1], base) for k in SPLITS
            },
            "msharp_vmap_over_base": {str(k): _ratio(med[f"vmap/{k}"], base) for k in SPLITS},
            **{
                f"msharp_{path}_over_base": {
                    str(k): _ratio(med[f"{path}/{k}"], base) for k in SPLITS if f"{path}/{k}" in med
                }
                for path in ("fused", "grouped")
            },
            "msharp_loop_over_base": {str(k): _ratio(med[f"loop/{k}"], base) for k in SPLITS},
            # the two-pass floor: an exact m-sharpness step is never cheaper than a SAM step
            "msharp_sam_over_loop": {str(k): _ratio(med["sam"], med[f"loop/{k}"]) for k in SPLITS},
        }

    def worst(key: str) -> Any:
        first = next(iter(models.values()))[key]
        if isinstance(first, dict):
            return {k: max(m[key][k] for m in models.values()) for k in first}
        return max(m[key] for m in models.values())

    result: dict[str, Any] = {"benchmark": "step_overhead", **meta}
    for key in ("sam_over_base", "sgd_variant_over_base", "msharp_vectorized_over_loop",
                "msharp_vectorized_over_base", "msharp_loop_over_base"):
        result[key] = worst(key)
    result["cross_check_from_min"] = cross_check(models)
    result["peak_memory_mb"] = memory
    result["models"] = models
    result["targets"] = check_targets(result)
    result["all_targets_pass"] = all(t["pass"] for t in result["targets"])
    return result


def cross_check(models: dict[str, Any]) -> dict[str, Any]:
    """The target ratios again from each config's fastest block (worst over models).

    Not the headline (medians are): a loaded machine only ever adds time, so ratios of minima
    show what the code costs when nothing else runs; far apart from the medians, the run was noisy.
    """
    out: dict[str, Any] = {}
    for d in models.values():
        mn = d["min_ms"]
        mine = {
            "sam_over_base": mn["sam"] / mn["base"],
            "sgd_variant_over_base": mn["sgd"] / mn["base"],
            "msharp_vectorized_over_base": {
                str(k): vectorized(mn, k)[1] / mn["base"] for k in SPLITS
            },
            "msharp_vectorized_over_loop": {
                str(k): vectorized(mn, k)[1] / mn[f"loop/{k}"] for k in SPLITS
            },
        }
        for key, value in mine.items():
            if isinstance(value, dict):
                slot = out.setdefault(key, {})
                for k, v in value.items():
                    slot[k] = max(slot.get(k, v), v)
            else:
                out[key] = max(out.get(key, value), value)
    return out


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target on the worst case and per model; ``reliable`` is False for noisy medians."""
    noisy = {name for name, d in result["models"].items() if d["blocks"] != "quiet"}
    out = []
    for key, split, limit in TARGETS:
        label = key if split is None else f"{key}[B/m={split}]"
        for model, detail in [("worst", result), *result["models"].items()]:
            value = detail[key] if split is None else detail[key][split]
            out.append({"target": label, "model": model, "value": value, "limit": limit,
                        "pass": bool(value <= limit),
                        "reliable": not (noisy if model == "worst" else noisy & {model})})
    for key, limit in TRAINING_TARGETS if "training" in result else ():
        value = result["training"][key]
        out.append({"target": key, "model": "digits", "value": value, "limit": limit,
                    "pass": bool(value <= limit), "reliable": not result.get("quick", False)})
    return out


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"step overhead, batch {BATCH}, torch {result['torch']}, {result['threads']} threads, "
        f"{result['rounds']} rounds (median of per-step times; p25-p75 in brackets)",
    ]
    for name, d in result["models"].items():
        lines.append("")
        lines.append(f"{name}  (input {tuple(d['input_shape'])}, {d['params']} parameters, "
                     f"{d['steps_per_block']} steps per block; blocks used: {d['blocks']}, "
                     f"{min(d['blocks_used'].values())}-{max(d['blocks_used'].values())} of "
                     f"{max(d['blocks_timed'].values())} per config)")
        lines.append(f"  {'config':<9} {'median ms':>10} {'p25-p75 ms':>17} {'min ms':>8} "
                     f"{'x base':>7} {'x loop':>10} {'peak alloc MB':>14}")
        mem = result["peak_memory_mb"]["step_peak_alloc"].get(name, {})
        for c, v in d["median_ms"].items():
            vl = ""
            if c.startswith(tuple(f"{path}/" for path in VECTORIZED)):
                vl = f"{v / d['median_ms']['loop/' + c.split('/')[1]]:.2f}"
            spread = f"{d['p25_ms'][c]:.2f}-{d['p75_ms'][c]:.2f}"
            alloc = f"{mem[c]:.1f}" if c in mem else ""
            lines.append(f"  {c:<9} {v:>10.2f} {spread:>17} {d['min_ms'][c]:>8.2f} "
                         f"{v / d['median_ms']['base']:>7.2f} {vl:>10} {alloc:>14}")
    lines.append("")
    lines.append(f"peak RSS of the process: {result['peak_memory_mb']['process_peak_rss']:.0f} MB")
    cc = result["cross_check_from_min"]
    lines.append(
        "cross-check from minima (worst over models): "
        f"sam/base {cc['sam_over_base']:.2f}, sgd/base {cc['sgd_variant_over_base']:.2f}, "
        f"vectorized/base[8] {cc['msharp_vectorized_over_base']['8']:.2f}, "
        f"vectorized/loop[8] {cc['msharp_vectorized_over_loop']['8']:.2f}"
    )
    lines.append(f"load average at start / end: {result['loadavg_start'][0]:.2f} / "
                 f"{result['loadavg_end'][0]:.2f}; waited {result['quiet_filter']['seconds_waited_for_quiet']:.0f} s "
                 f"for a quiet machine; wall time {result['wall_s']:.0f} s")
    if "training" in result:
        tr = result["training"]
        lines.append(
            f"training loop (builtin:digits, default CNN, 1 thread): SAM step + forgetting metrics "
            f"/ SAM step {tr['metrics_over_step']:.3f}; samtune epoch / hand-written epoch "
            f"{tr['loop_over_handwritten']:.3f}; metrics {tr['ops']['metrics_per_step']:.1f} "
            "tensor ops per step"
        )
    lines.append("")
    lines.append("targets (median ratios; worst over models first; "
                 "'?': too few quiet blocks, the verdict is not reliable):")
    for t in result["targets"]:
        verdict = ("PASS" if t["pass"] else "FAIL") + ("" if t["reliable"] else "?")
        lines.append(f"  {verdict}  {t['target']:<40} {t['model']:<6} "
                     f"{t['value']:.2f} <= {t['limit']}")
    floor = ", ".join(f"{name} {d['msharp_sam_over_loop']['8']:.2f}"
                      for name, d in result["models"].items())
    lines.append(f"two-pass floor of vectorized/loop at B/m=8 (a SAM step over the loop): {floor}")
    return "\n".join(lines)


# -- profiling one configuration -----------------------------------------------------------------


def profile_config(which: str, steps: int, seed: int) -> str:
    """torch.profiler table of ``steps`` steps of one configuration, e.g. ``cnn:vmap/8``."""
    from torch.profiler import ProfilerActivity, profile

    model_name, _, config = which.partition(":")
    specs = [s for s in MODELS if s.name == model_name]
    if not specs or config not in config_names(VECTORIZED):
        raise SystemExit(
            f"--profile wants MODEL:CONFIG with MODEL in {[s.name for s in MODELS]} and CONFIG in "
            f"{config_names(VECTORIZED)}, but got {which!r}."
        )
    torch.manual_seed(seed)
    spec = specs[0]
    runner = make_runner(spec, config, spec.build(), synthetic_batches(spec.input_shape, seed))
    for _ in range(3):
        runner.step()
    with quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                runner.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)


def _breakdown_model(spec: ModelSpec, i: int, seed: int, k: int) -> list[Runner]:
    """Where SAM's and m-sharpness's time goes: engine steps next to their pieces and floors.

    Timed like the benchmark (interleaved shuffled rounds, medians), on the same models. The
    "lean SAM" reference does samtune's ``sam`` maths (e = rho g / ||g||, gradient at w + e applied
    at w, weights and BN statistics restored bit for bit) with foreach ops and no other work;
    "2k micro fwd+bwd" is the compute a micro-batch loop cannot avoid.
    """
    from torch.func import functional_call, grad, vmap
    from torch.nn.modules.batchnorm import _BatchNorm

    from samtune.optim._perturb import perturbation

    torch.manual_seed(seed + i)
    init = spec.build()
    data = synthetic_batches(spec.input_shape, seed + 100 + i)
    x, y = data[0]
    eng = {c: make_runner(spec, c, init, data) for c in ("base", "sgd", "sam", f"vmap/{k}",
                                                         f"loop/{k}")}
    model = copy.deepcopy(init).train()
    params = list(model.parameters())
    bns = [mod for mod in model.modules() if isinstance(mod, _BatchNorm)]
    buffers = [b for mod in bns for b in (mod.running_mean, mod.running_var,
                                          mod.num_batches_tracked)]
    sgd = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def fwd_bwd(xx: torch.Tensor, yy: torch.Tensor) -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(xx), yy).backward()

    def lean_sam() -> None:
        fwd_bwd(x, y)
        with torch.no_grad():
            g = [p.grad for p in params]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(g))).add_(1e-12)
            e = torch._foreach_mul(g, RHO / norm)
            backup = [p.detach().clone() for p in params]
            saved = [b.clone() for b in buffers]
            torch._foreach_add_(params, e)  # climb to w + e
        fwd_bwd(x, y)
        with torch.no_grad():
            torch._foreach_copy_(params, backup)  # back to w, bit for bit
            if buffers:
                torch._foreach_copy_(buffers, saved)  # BN statistics as before the climb
        sgd.step()

    m = BATCH // k
    xs, ys = x.reshape(k, m, *x.shape[1:]), y.reshape(k, m)
    stat_names = {f"{n}.{s}" for n, mod in model.named_modules() if isinstance(mod, _BatchNorm)
                  for s in ("running_mean", "running_var", "num_batches_tracked")}
    diff = {n: p.detach() for n, p in model.named_parameters()}
    state = {n: b for n, b in model.named_buffers() if n not in stat_names}
    start = {n: b.detach().clone() for n, b in model.named_buffers() if n in stat_names}

    def stacked() -> dict[str, torch.Tensor]:
        return {n: b.unsqueeze(0).repeat(k, *([1] * b.dim())) for n, b in start.items()}

    def objective(p, st, xx, yy):
        return F.cross_entropy(functional_call(model, (p, st, state), (xx,)), yy)

    clean = vmap(grad(objective), in_dims=(None, 0, 0, 0), randomness="different")
    pert = vmap(grad(objective), in_dims=(0, 0, 0, 0), randomness="different")
    g = clean(diff, stacked(), xs, ys)
    direction = list(g.values())
    e = perturbation(direction, list(diff.values()), [RHO] * len(direction))
    shifted = {n: diff[n].unsqueeze(0) + e_n for n, e_n in zip(diff, e)}

    def lean_perturbation() -> list[torch.Tensor]:
        sq = sum(torch.linalg.vector_norm(d.flatten(1), dim=1).square() for d in direction)
        scale = RHO / (sq.sqrt() + 1e-12)
        return [d * scale.view(-1, *([1] * (d.dim() - 1))) for d in direction]

    def loop_floor() -> None:
        for j in range(k):
            fwd_bwd(xs[j], ys[j])
            fwd_bwd(xs[j], ys[j])

    fns: dict[str, Callable[[], Any]] = {
        "base step (torch SGD)": eng["base"].step,
        "fwd+bwd, full batch": lambda: fwd_bwd(x, y),
        "samtune sgd step": eng["sgd"].step,
        "samtune sam step": eng["sam"].step,
        "lean SAM step (same maths, foreach)": lean_sam,
        f"samtune vmap/{k} step": eng[f"vmap/{k}"].step,
        "  clean vmap(grad) call": lambda: clean(diff, stacked(), xs, ys),
        "  perturbed vmap(grad) call": lambda: pert(shifted, stacked(), xs, ys),
        "  samtune perturbation()": lambda: perturbation(direction, list(diff.values()),
                                                         [RHO] * len(direction)),
        "  vector_norm perturbation": lean_perturbation,
        f"samtune loop/{k} step": eng[f"loop/{k}"].step,
        "  2k micro fwd+bwd (loop floor)": loop_floor,
    }
    return [Runner(spec.name, name, fn, None, model) for name, fn in fns.items()]


def breakdown(seed: int, rounds: int, max_seconds: float, max_wait: float,
              log: Callable[[str], None], k: int = 8) -> str:
    """Timings of the pieces of a SAM step and a B/m = ``k`` step, for every model."""
    runners = [r for i, spec in enumerate(MODELS) for r in _breakdown_model(spec, i, seed, k)]
    steps = {s.name: s.steps for s in MODELS}
    done, _ = run_rounds(runners, steps, rounds, 3, seed, max_seconds, max_wait, log)
    out = [f"breakdown at B/m = {k}: median ms over the quiet blocks of {done} interleaved rounds"]
    for spec in MODELS:
        mine = [r for r in runners if r.model_name == spec.name]
        med = {r.config: statistics.median(_quiet(r) or r.times) for r in mine}
        base = med["base step (torch SGD)"]
        out.append(f"\n{spec.name}:{'ms':>41} {'x base':>7} {'quiet blocks':>13}")
        for r in mine:
            out.append(f"  {r.config:<38} {med[r.config] * 1e3:8.3f} {med[r.config] / base:7.2f} "
                       f"{len(_quiet(r)):>6} of {len(r.times)}")
    return "\n".join(out)


# -- entry point ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 21; quick 2)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per timed block for every model (default: mlp 24, cnn 3; quick 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per config (default 3; quick 0)")
    p.add_argument("--max-wait", type=float, default=20.0,
                   help="seconds to wait, before each round and before retrying a noisy block, "
                        "for other processes to go quiet (default 20; 0: never wait)")
    p.add_argument("--max-seconds", type=float, default=240.0,
                   help="stop timing after the round that passes this many seconds (default 240; "
                        f"never fewer than {MIN_ROUNDS} rounds)")
    p.add_argument("--quick", action="store_true", help="a few rounds of one step: a smoke test")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--out", type=Path, default=None,
                   help=f"also write the JSON here (default when not --quick: {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-training", action="store_true",
                   help="skip the training-loop ratios (metrics overhead, loop vs hand-written)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's, 2 on this machine)")
    p.add_argument("--only", choices=("paths", "variants"), default=None,
                   help="time only the path table (the engine's paths on the benchmark's MLP and "
                        "CNN) or only the variant table (every variant x m on samtune's default "
                        "models, rho=0 steps, perturbation schedules); default: both")
    p.add_argument("--check", action="store_true", help="exit with status 1 if a target fails")
    p.add_argument("--profile", metavar="MODEL:CONFIG", default=None,
                   help="instead of the benchmark, profile one configuration (e.g. cnn:vmap/8)")
    p.add_argument("--breakdown", action="store_true",
                   help="instead of the benchmark, time the pieces of a SAM and a B/m=8 step")
    args = p.parse_args(argv)
    if args.max_seconds <= 0:
        p.error(f"--max-seconds must be > 0, but got {args.max_seconds}.")
    if args.max_wait < 0:
        p.error(f"--max-wait must be >= 0, but got {args.max_wait}.")
    for name in ("rounds", "steps", "warmup"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            p.error(f"--{name} must be >= {0 if name == 'warmup' else 1}, but got {value}.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        print(profile_config(args.profile, args.steps or 5, args.seed))
        return 0
    if args.breakdown:
        print(breakdown(args.seed, args.rounds or 11, args.max_seconds, args.max_wait,
                        lambda msg: print(msg, file=sys.stderr, flush=True)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 21)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 3)
    steps = {s.name: args.steps or (1 if args.quick else s.steps) for s in MODELS}

    def log(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    load_start = os.getloadavg()
    rss_start = rss_mb()
    runners = make_runners(MODELS, args.seed) if args.only != "variants" else []
    variant_runners = make_variant_runners(args.seed, args.quick) if args.only != "paths" else []
    for spec in VARIANT_MODELS:
        steps[spec.key] = args.steps or (1 if args.quick else spec.steps)
    if not args.quick:
        log("variant table: warming msharp='auto' up until it has chosen a path")
        settle_auto(variant_runners)
    max_wait = 0.0 if args.quick else args.max_wait
    rounds, waited = run_rounds(
        runners + variant_runners, steps, rounds, warmup, args.seed, args.max_seconds, max_wait, log
    )
    load_end = os.getloadavg()

    # Memory after timing, one step per config, so the profiler cannot slow the timed steps.
    alloc: dict[str, dict[str, float]] = {}
    estimate: dict[str, dict[str, float]] = {}
    for r in runners:
        alloc.setdefault(r.model_name, {})[r.config] = step_peak_alloc_mb(r)
        if r.config.startswith("vmap/"):
            estimate.setdefault(r.model_name, {})[r.config.split("/")[1]] = stacked_estimate_mb(r)
    extra = {
        str(k): max((a[f"vmap/{k}"] - a[f"loop/{k}"] for a in alloc.values()), default=None)
        for k in SPLITS
    }
    memory = {
        "process_peak_rss": rss_mb(),
        "process_rss_at_start": rss_start,
        "step_peak_alloc": alloc,
        "vmap_extra_over_loop": extra,
        "vmap_stacked_estimate": estimate,
        "method": (
            "process_peak_rss: resource.getrusage ru_maxrss of the whole run (all models and "
            "configs). step_peak_alloc: measured, peak of torch's CPU allocator during one step "
            "above its level at the step's start (torch.profiler profile_memory=True; "
            "allocations made outside torch's allocator are not seen). vmap_extra_over_loop: "
            "measured vmap peak minus loop peak at the same B/m, worst over models. "
            "vmap_stacked_estimate: not measured, the engine's bound: micro-batches per "
            "chunk x (4 x parameter bytes + one micro-batch's saved activations) "
            "(samtune.optim._msharp.chunk_size)."
        ),
    }
    training = None
    if not args.no_training:  # the training loop's ratios (issue: data, models, training loop)
        here = str(Path(__file__).resolve().parent)
        if here not in sys.path:
            sys.path.insert(0, here)
        import train_overhead

        log("training-loop ratios (train_overhead.py: metrics, samtune vs hand-written loop)")
        training = train_overhead.measure(2 if args.quick else 15, 3 if args.quick else 30)
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/step_overhead.py", *(argv or sys.argv[1:])]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "batch": BATCH,
        "rounds": rounds,
        "rounds_requested": args.rounds or (2 if args.quick else 21),
        "steps": steps,
        "warmup": warmup,
        "seed": args.seed,
        "quick": args.quick,
        "quiet_filter": {
            "available": CpuMonitor().available,
            "stall_threshold": QUIET_STALL,
            "wait_threshold_cores": QUIET_CORES,
            "min_quiet_blocks": MIN_QUIET_BLOCKS,
            "seconds_waited_for_quiet": waited,
            "rule": "medians use the quiet blocks: those during which some task waited for a "
                    "CPU less than stall_threshold of the time (/proc/pressure/cpu), when every "
                    "config of the model has at least min_quiet_blocks of them; else all blocks. "
                    "A noisy block is retried (up to 2 times) after waiting, at most max_wait s, "
                    "for other processes to use < wait_threshold_cores (/proc/stat)",
        },
        "loadavg_start": list(load_start),
        "loadavg_end": list(load_end),
    }
    if training is not None:
        meta["training"] = training
    meta["wall_s"] = time.perf_counter() - started
    if runners:
        result = summarize(runners, MODELS, memory, meta)
    else:
        result = {"benchmark": "step_overhead", **meta, "peak_memory_mb": memory, "targets": []}
    if variant_runners:
        variants = summarize_variants(variant_runners)
        variants["targets"] = check_variant_targets(variants, args.quick)
        result["variant_m_over_base"] = variants["variant_m_over_base"]
        result["variants"] = variants
        result["targets"] = result["targets"] + variants["targets"]
    result["all_targets_pass"] = all(t["pass"] for t in result["targets"])

    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
    if args.json:
        print(json.dumps(result, allow_nan=True))
    else:
        if runners:
            print(format_table(result))
        if variant_runners:
            print(("\n" if runners else "") + format_variant_table(result["variants"]))
        if out is not None:
            print(f"\nJSON written to {out}")
    if args.check and not result["all_targets_pass"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
