"""The SAM-family optimizer: one engine for every registered variant.

Follows the structure of SAM (Foret et al. 2021; github davda54/sam): it wraps a base optimizer
and shares its param groups, so rho lives in ``param_groups`` and learning-rate schedulers attach
the usual torch way. Variants are specs (``_variants.py``), not subclasses.

Two ways to drive a step:

- ``step(closure)``: the closure zeroes the gradients, runs forward and backward and returns the
  loss; it is called once per pass (as ``torch.optim.LBFGS`` does) and ``step`` returns the clean
  loss. Works for sgd, sam, asam, gsam and randsam with ``m=None``. OBF needs the logits and the
  targets and m-sharpness needs the batch: for those ``step(closure)`` raises and points to
  ``train_step``.
- ``train_step(model, inputs, targets, loss_fn)``: runs both passes itself (per micro-batch when
  ``m`` is set) and returns the clean and perturbed outputs and losses, so forgetting metrics
  need no extra forward pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from samtune.errors import ConfigError
from samtune.optim import _micro, _msharp_loop, _paths
from samtune.optim._autotune import MsharpChooser
from samtune.optim._bn import bn_modules, frozen_bn_stats
from samtune.optim._config import BASE_OPTIMIZERS, SAMConfig
from samtune.optim._context import PathContext
from samtune.optim._output import StepOutput, joined
from samtune.optim._variants import get_variant

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CPU_MSHARP_MEMORY_MB = 256.0  # default bound of the stacked micro-batch tensors on the CPU
GPU_MSHARP_MEMORY_SHARE = 0.25  # on a GPU: this share of its free memory when first needed
MSHARP_MODES = ("auto", *_paths.list_paths())  # "auto", "fused", "grouped", "vmap", "loop"
def default_msharp_memory_mb(device: torch.device) -> float:
    """``msharp_memory_mb`` when none is given: see :attr:`SAMOptimizer.msharp_memory_mb`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return GPU_MSHARP_MEMORY_SHARE * free / 2**20
    return CPU_MSHARP_MEMORY_MB


def _loss_scale(scaler: torch.amp.GradScaler | None, device: torch.device) -> float:
    """The GradScaler's current scale (1 without one); ``scaler.scale()`` initialises it on
    first use. Read once per step."""
    if scaler is None or not scaler.is_enabled():
        return 1.0
    return float(scaler.scale(torch.ones((), device=device)))



class SAMOptimizer(torch.optim.Optimizer):
    """SAM-family optimizer built from a :class:`SAMConfig`; see :func:`build_optimizer`.

    Engine options (they change speed, never results):
    ``msharp``: how m-sharpness runs. "auto" times, on the first steps, every implementation
    that can reproduce the loop for this model and keeps the fastest per number of micro-batches:
    "fused" (low-rank, for models made of Linear layers; ``_msharp_linear.py``), "grouped"
    (micro-batches as the groups of grouped convolutions and batched matmuls, for models of
    Conv, Linear and norm layers; ``_msharp_grouped.py``), "vmap" (torch.func; ``_msharp.py``;
    both chunked to ``msharp_memory_mb``) and "loop" (the reference).
    Naming one forces it. ``generator`` seeds randsam's noise.
    """

    def __init__(
        self,
        params: Iterable[Any],
        config: SAMConfig,
        *,
        model: nn.Module | None = None,
        total_steps: int | None = None,
        msharp: str = "auto",
        msharp_memory_mb: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if msharp not in MSHARP_MODES:
            raise ConfigError(
                f"msharp must be one of {', '.join(MSHARP_MODES)}, but got msharp={msharp!r}."
            )
        self.config = config
        self.spec = get_variant(config.variant)
        self.variant_kwargs = dict(config.variant_kwargs)
        self.rho_schedule = config.rho_schedule(total_steps)
        self.perturb_schedule = config.perturb_schedule(total_steps)
        super().__init__(params, dict(rho=config.rho, **config.base_kwargs))
        self.base_optimizer = BASE_OPTIMIZERS[config.base](self.param_groups, **config.base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        for group in self.param_groups:
            group.setdefault("lr_max", group["lr"])  # lr_prop's reference learning rate
        self.model = model
        self.msharp = msharp
        self._msharp_memory_mb = msharp_memory_mb
        self.generator = generator
        self.sam_step = 0  # steps taken; the rho schedule's clock
        self._acc: list[torch.Tensor] | None = None  # accumulated final gradients (train_step)
        self._acc_n = 0
        self._final_ready = False
        self._scaler: torch.amp.GradScaler | None = None
        self._failed: set[str] = set()  # implementations that raised on this model ("auto")
        self._path_cache: dict[str, Any] = {}  # what the m-sharpness paths keep between steps
        self._chooser = MsharpChooser()  # msharp="auto": times both paths, keeps the faster
        self._perturbing = self.spec.perturbs  # whether the update under way perturbs

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def m(self) -> int | None:
        return self.config.m

    @property
    def msharp_memory_mb(self) -> float:
        """Bound (MB) of one batched call's stacked micro-batch tensors (grouped and vmap paths).

        Unless given, 256 MB on the CPU and a quarter of a GPU's free memory, read when first
        needed (so after the model has moved to its device).
        """
        if self._msharp_memory_mb is None:
            self._msharp_memory_mb = default_msharp_memory_mb(self._params()[0].device)
        return self._msharp_memory_mb

    @msharp_memory_mb.setter
    def msharp_memory_mb(self, value: float) -> None:
        self._msharp_memory_mb = value

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _rhos(self) -> list[float]:
        return [g["rho"] for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _apply_rho_schedule(self) -> None:
        """Write this step's rho into the param groups (a constant schedule leaves them alone)."""
        if self.rho_schedule.is_constant:
            return
        for group in self.param_groups:
            group["rho"] = self.rho_schedule(self.sam_step, lr=group["lr"], lr_max=group["lr_max"])

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (momentum buffers, ...) and param groups, as torch's
        optimizers give them, and ``sam_step``, the clock the rho and perturbation schedules
        read: loading it into a new optimizer resumes the same steps."""
        out = super().state_dict()
        out["sam_step"] = self.sam_step
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        sam_step = state_dict.pop("sam_step", None)
        super().load_state_dict(state_dict)
        # torch's load replaces the state and the param groups with new objects; the base
        # optimizer steps on these, so it must share them again (else it keeps the old ones)
        self.base_optimizer.param_groups = self.param_groups
        self.base_optimizer.state = self.state
        if sam_step is not None:
            self.sam_step = int(sam_step)

    def path_context(self) -> PathContext:
        """What the m-sharpness paths see of this optimizer (this step's rhos)."""
        return PathContext(self.spec, self.variant_kwargs, self._params(), self._rhos(),
                           self.msharp_memory_mb, self.generator, self._path_cache)

    # -- the torch-style step ------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update. With a closure, call it for each pass and return the clean loss.

        Without a closure, the gradients must already be final: either the baseline (the user ran
        backward), or ``train_step`` prepared them.
        """
        if closure is None:
            if not (self._final_ready or not self.spec.perturbs):
                raise ConfigError(
                    f"variant {self.spec.name!r} needs step(closure) or train_step(model, inputs, "
                    "targets, loss_fn): a plain step() after backward would skip the perturbation."
                )
            self._update()
            return None
        if self.spec.direction == "obf":
            raise ConfigError(
                f"variant {self.spec.name!r} needs the logits and targets; use "
                "optimizer.train_step(model, inputs, targets, loss_fn) instead of step(closure)."
            )
        if self.m is not None:
            raise ConfigError(
                f"m-sharpness (m={self.m}) needs the batch; use optimizer.train_step(model, inputs, "
                "targets, loss_fn) instead of step(closure)."
            )
        self._start_update()
        with torch.enable_grad():
            loss = closure()
        if not self._perturbing:  # the baseline, or a step whose rho is 0 or that the
            # perturbation schedule leaves out: the base optimizer's step, one pass
            self._update()
            return loss
        ctx = self.path_context()
        direction = _msharp_loop.direction(ctx)
        backup = _msharp_loop.climb(ctx, ctx.perturbation(direction, ctx.params, batched=False))
        ctx.clear_grads()  # fresh tensors: direction keeps the ascent gradient
        with frozen_bn_stats(bn_modules(self.model)), torch.enable_grad():
            closure()
        _msharp_loop.restore(ctx.params, backup)
        if self.spec.gsam:
            for p, f in zip(ctx.params, ctx.final_one(direction, _msharp_loop.grads(ctx.params))):
                p.grad = f
        self._update()
        return loss

    def _update(self) -> None:
        """Clip the final gradient, let the base optimizer step, advance the clock."""
        params = self._params()
        scaler, self._scaler = self._scaler, None
        if scaler is not None:
            scaler.unscale_(self.base_optimizer)
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if scaler is not None:
            scaler.step(self.base_optimizer)
            scaler.update()
        else:
            self.base_optimizer.step()
        self._final_ready = False
        self.sam_step += 1

    # -- the high-level step -------------------------------------------------------------------

    def train_step(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        loss_fn: LossFn | None = None,
        *,
        update: bool = True,
        scaler: torch.amp.GradScaler | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> StepOutput:
        """Both passes on one batch, then (if ``update``) the base optimizer's step.

        A step that does not perturb (the ``sgd`` baseline, a step whose rho is 0 in every param
        group, a step the perturbation schedule leaves out) is the base optimizer's step: one
        forward and backward on the whole batch, whatever m, and ``perturbed_*`` are None.

        With m-sharpness, a batch that m does not divide (an epoch's last batch) runs as
        micro-batches of m and one smaller micro-batch of the rest, each weighted by its number
        of examples; a batch smaller than m is one micro-batch. A ``DistributedDataParallel``
        model gets m-sharpness over the global batch (see :meth:`_distributed_step`).

        ``update=False`` accumulates this batch's final gradient (each call its own
        perturbation); the next call with ``update=True`` averages the accumulated gradients over
        examples and steps: k equal chunks give exactly m-sharpness with m = chunk size.
        ``scaler``: a ``torch.amp.GradScaler`` for fp16 (each pass's gradients are unscaled; an
        inf/NaN in either pass skips the update and backs the scale off). ``autocast_dtype``:
        run the forward passes under ``torch.autocast`` (e.g. ``torch.bfloat16``).
        """
        loss_fn = loss_fn or F.cross_entropy
        if isinstance(model, nn.parallel.DistributedDataParallel):
            return self._distributed_step(model, inputs, targets, loss_fn, update=update,
                                          scaler=scaler, autocast_dtype=autocast_dtype)
        if self._acc is None:  # the first batch of an update: this step's rho and gate
            self._start_update()
        kw = {"scaler": scaler, "autocast_dtype": autocast_dtype}
        if not self._perturbing:  # the base optimizer's step, on the whole batch
            return self._chunk_step(model, inputs, targets, loss_fn, 1, update=update, **kw)
        batch = inputs.shape[0]
        k, head, rest = _micro.split(batch, self.m)
        if rest:  # micro-batches of m, then one of the rest: weighted by their examples
            first = self._chunk_step(model, inputs[:head], targets[:head], loss_fn, k,
                                     update=False, **kw)
            last = self._chunk_step(model, inputs[head:], targets[head:], loss_fn, 1,
                                    update=update, **kw)
            return joined(first, last, head, rest)
        return self._chunk_step(model, inputs, targets, loss_fn, k, update=update, **kw)

    def _start_update(self) -> None:
        """Write this step's rho into the param groups and decide whether the step perturbs:
        the variant perturbs, the perturbation schedule says so and some rho is not 0."""
        self._apply_rho_schedule()
        self._perturbing = (
            self.spec.perturbs
            and (self.perturb_schedule.is_always or self.perturb_schedule(self.sam_step))
            and any(g["rho"] != 0 for g in self.param_groups)
        )

    def _chunk_step(self, model, inputs, targets, loss_fn, k: int, *, update: bool, scaler,
                    autocast_dtype) -> StepOutput:
        """Both passes on k equal micro-batches (one pass when the step does not perturb), then
        the update, or the accumulation of this chunk's final gradient."""
        scale = _loss_scale(scaler, inputs.device)
        autocast = (
            torch.autocast(inputs.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None else nullcontext()
        )
        params = self._params()
        if not self._perturbing:
            out = self._baseline_pass(model, inputs, targets, loss_fn, autocast, scale)
            if self._acc is None and update:  # fast path: p.grad already holds the final gradient
                self._scaler, self._final_ready = scaler, True
                self.step()
                return out
            final = _msharp_loop.grads(params, scale)
        else:
            out, final = self._msharp_pass(model, inputs, targets, loss_fn, k, autocast, scale)
        if self._acc is None and update:  # no accumulation: hand the final gradient over as is
            for p, f in zip(params, final):
                p.grad = f.mul_(scale) if scaler is not None else f
            self._scaler, self._final_ready = scaler, True
            self.step()  # the instance's step, so lr schedulers see it
            return out
        self._accumulate(final, inputs.shape[0])
        self.zero_grad(set_to_none=True)
        if update:
            self._finish(params, scaler, scale)
        return out

    def _msharp_pass(self, model, inputs, targets, loss_fn, k, autocast, scale):
        """Both passes on k micro-batches through the chosen path (the loop when a faster one
        fails on this model under ``msharp="auto"``)."""
        ctx = self.path_context()
        name = self._msharp_impl(ctx, model, inputs, k, isinstance(autocast, torch.autocast))
        t0 = self._chooser.clock(inputs, k) if self.msharp == "auto" else None
        args = (ctx, model, inputs, targets, loss_fn, k, autocast, scale)
        try:
            result = _paths.get_path(name).run(*args)
        except (RuntimeError, NotImplementedError) as exc:
            if name == "loop" or self.msharp == name:
                raise
            warnings.warn(
                f"{name} m-sharpness failed for this model ({exc!s:.120}); "
                "not using it from now on.", RuntimeWarning, stacklevel=4,
            )
            self._chooser.drop(name)
            self._failed.add(name)
            return _paths.get_path("loop").run(*args)
        if t0 is not None:
            self._chooser.record(inputs, k, name, t0)
        return result

    def _distributed_step(self, ddp, inputs, targets, loss_fn, *, update, scaler, autocast_dtype):
        """``train_step`` on a ``DistributedDataParallel`` model: m-sharpness over the global batch.

        Each process runs both passes on its own batch through the wrapped module (no DDP hooks),
        so its micro-batches of m (m=None: its whole batch) get their own perturbations; the
        final gradients, weighted by examples, are then summed over the processes once, before
        the update, and every process takes the same step. Buffers (BatchNorm statistics) are
        first broadcast from the group's first process when DDP would (``broadcast_buffers``).
        """
        import torch.distributed as dist

        group = ddp.process_group
        if ddp.broadcast_buffers:
            src = dist.get_global_rank(group, 0)
            for b in ddp.module.buffers():
                dist.broadcast(b, src=src, group=group)
        out = self.train_step(ddp.module, inputs, targets, loss_fn, update=False, scaler=scaler,
                              autocast_dtype=autocast_dtype)
        if update:
            acc = self._acc
            flat = torch.cat([a.reshape(-1) for a in acc] + [acc[0].new_tensor([self._acc_n])])
            dist.all_reduce(flat, group=group)  # sums of n_j * final_j and of n_j
            sums = flat[:-1].split([a.numel() for a in acc])
            torch._foreach_copy_(acc, [v.view_as(a) for v, a in zip(sums, acc)])
            self._acc_n = float(flat[-1])
            self._finish(self._params(), scaler, _loss_scale(scaler, inputs.device))
        return out

    def _msharp_impl(self, ctx: PathContext, model: nn.Module, inputs: torch.Tensor, k: int,
                     autocast: bool) -> str:
        """The m-sharpness path for k micro-batches (see ``_autotune.MsharpChooser``)."""
        if k == 1 or self.msharp == "loop":
            return "loop"
        if self.msharp != "auto":
            return self.msharp
        return self._chooser.choose(
            k, lambda: _paths.candidates(ctx, model, k, inputs, autocast, self._failed))

    @property
    def msharp_choice(self) -> dict[int, str]:
        """The implementation "auto" settled on, per number of micro-batches."""
        return dict(self._chooser.choice)

    def _accumulate(self, final: list[torch.Tensor], n: int) -> None:
        if self._acc is None:
            self._acc = [f * n for f in final]
        else:
            for a, f in zip(self._acc, final):
                a.add_(f, alpha=n)
        self._acc_n += n

    def _finish(self, params, scaler, scale: float) -> None:
        acc, n = self._acc, self._acc_n
        self._acc, self._acc_n = None, 0
        for p, a in zip(params, acc):
            p.grad = a.div_(n / scale) if scaler is not None else a.div_(n)
        self._scaler = scaler
        self._final_ready = True
        self.step()  # the instance's step, so lr schedulers see it

    def _baseline_pass(self, model, inputs, targets, loss_fn, autocast, scale):
        """One forward and backward; leaves the (scaled) gradient in ``p.grad``."""
        self.zero_grad(set_to_none=True)
        with torch.enable_grad(), autocast:
            out = model(inputs)
            loss = loss_fn(out, targets)
        (loss * scale if scale != 1.0 else loss).backward()
        return StepOutput(loss.detach(), out.detach())

    def _loop_pass(self, model, inputs, targets, loss_fn, k, autocast, scale):
        """The reference: a Python loop over the k micro-batches, each with its own e_j."""
        return _msharp_loop.loop_pass(self, model, inputs, targets, loss_fn, k, autocast, scale)
