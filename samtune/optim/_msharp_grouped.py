"""Grouped m-sharpness: the k micro-batches as the k groups of one grouped forward and backward.

Micro-batch j gets its own copy of the weights, stacked as W (k, *shape): w in the clean pass,
w + e_j in the perturbed one. The model then runs once on the whole batch in a *packed* layout
that keeps each micro-batch's channels apart: an activation (B, C, ...) of B = k*m examples is
held as (m, k*C, ...), element [i, j*C + c] being example j*m + i's channel c. In that layout

- a convolution with weights W_j for micro-batch j is one grouped convolution (groups times k),
- a Linear layer is one batched matmul over j,
- BatchNorm and GroupNorm normalize each micro-batch with its own statistics (ghost BN, as the
  loop does), each with its own affine weights,
- elementwise activations, pooling, residual additions and flattening (``flatten(x, 1)``,
  ``x.view(x.size(0), -1)``) need no change.

so ``autograd.grad(sum_j obj_j, W)`` gives every micro-batch's gradient at its own weights in one
backward, with the arithmetic of one full-batch pass. Both m-sharpness passes work this way;
nothing is modified in the model except, for the length of a forward, the ``forward`` of its
Conv, Linear and normalization layers (instance attributes, always removed again).

Which models: every optimized parameter must sit in an ``nn.Conv1d/2d/3d`` (zero padding),
``nn.Linear``, BatchNorm or GroupNorm layer, and no other module may hold parameters or buffers.
Models built from those layers, containers and the modules of :data:`_LAYOUT_FREE` (activations,
pooling, flattening, dropout) are exact by construction. Any other module (a ResNet block, a
custom activation, a whole torchvision model) has a forward that may do what the packed layout
breaks (``torch.cat`` along channels, a softmax over features, a reshape of the batch axis): the
first grouped step on such a model is checked against the loop on two micro-batches of the same
batch, in float64 (see :func:`_check_against_loop`), and the path is refused when they disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from samtune.optim import _msharp_loop
from samtune.optim._bn import STAT_NAMES, bn_modules, compose_running_stats
from samtune.optim._context import PathContext, as_context
from samtune.optim._msharp_linear import _counted, _micro_losses
from samtune.optim._output import StepOutput
from samtune.optim._perturb import obf_surrogate, random_direction

_CONVS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)

# Parameter-free modules whose result in the packed layout is the packed result: they act on
# each element, or on each channel's spatial extent (exact types: a subclass may override forward).
_LAYOUT_FREE = (
    *_DROPOUTS, nn.Identity, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.LeakyReLU,
    nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)

STACKED_COPIES = 5  # parameter-sized tensors per micro-batch: W, its gradient, e, w + e, gradient
CHECK_RTOL_FLOAT64 = 1e-6  # agreement with the loop on the first step, compared in float64
CHECK_RTOL = 1e-3  # the same in float32, for models that cannot run in float64; 5e-2 under autocast


def _layout_free(mod: nn.Module) -> bool:
    kind = type(mod)
    if kind is nn.Flatten:
        return mod.start_dim >= 1  # never folds the batch axis
    return kind in _LAYOUT_FREE


def _layers(ctx: PathContext | Any, model: nn.Module) -> tuple[list[nn.Module], bool] | None:
    """The layers that hold parameters, and whether the model needs the check against the loop.

    None when the model is unsupported: a parameter of the optimizer outside the model's Conv,
    Linear and norm layers, a parameter or buffer owned by another module, a hook, or a
    BatchNorm with a cumulative average (momentum=None). Other parameter-free modules (a
    custom activation, a ResNet block) are allowed and make the model need the check.
    """
    ctx = as_context(ctx)
    index = {id(p) for p in ctx.params}
    found: set[int] = set()
    layers, custom = [], False
    for mod in model.modules():
        if mod._forward_hooks or mod._forward_pre_hooks:
            return None  # a hook would see (or rewrite) packed tensors
        own = list(mod.parameters(recurse=False))
        if type(mod) in _CONVS:
            if mod.padding_mode != "zeros":
                return None
        elif type(mod) in _NORMS:
            if isinstance(mod, _BatchNorm) and mod.momentum is None:
                return None
        elif type(mod) is nn.Linear:
            pass
        elif own or next(mod.buffers(recurse=False), None) is not None:
            return None  # state used by a forward we cannot rewrite (or restore after the check)
        elif isinstance(mod, _CONTAINERS) or _layout_free(mod):
            continue
        else:
            custom = True  # a forward of its own: checked against the loop once
            continue
        layers.append(mod)
        found.update(id(p) for p in own)
    return (layers, custom) if index <= found else None


def _cached(ctx: PathContext | Any, model: nn.Module) -> list:
    """[model, :func:`_layers`, checked against the loop]: the static check, once per model."""
    ctx = as_context(ctx)
    cached = ctx.cache.get("_grouped_layers")
    if cached is None or cached[0] is not model:
        cached = ctx.cache["_grouped_layers"] = [model, _layers(ctx, model), False]
    return cached


def supported(ctx: PathContext | Any, model: nn.Module) -> bool:
    """Whether :func:`grouped_pass` can run this optimizer on this model."""
    ctx = as_context(ctx)
    return _cached(ctx, model)[1] is not None


def chunk_size(ctx: PathContext | Any, k: int) -> int:
    """Micro-batches per grouped call: its stacked weights must fit ``msharp_memory_mb``.

    The activations are those of the micro-batches' own examples (a chunk of c micro-batches
    holds c/k of what a full-batch pass holds), so only the stacked copies are counted.
    """
    ctx = as_context(ctx)
    per_micro = STACKED_COPIES * sum(p.numel() * p.element_size() for p in ctx.params)
    return max(1, min(k, int(ctx.memory_mb * 2**20 // max(1, per_micro))))


def pack(x: torch.Tensor, k: int) -> torch.Tensor:
    """(k*m, C, ...) in batch order -> (m, k*C, ...), micro-batch j's channels at j*C."""
    m = x.shape[0] // k
    if x.dim() == 1:
        raise RuntimeError("grouped m-sharpness needs inputs with a feature axis, (batch, ...)")
    return x.reshape(k, m, *x.shape[1:]).transpose(0, 1).reshape(m, k * x.shape[1], *x.shape[2:])


def unpack(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`pack`."""
    if not isinstance(y, torch.Tensor) or y.dim() < 2 or y.shape[1] % k:
        shape = getattr(y, "shape", None)
        raise RuntimeError(f"grouped m-sharpness: the model returned {shape}, not (batch, ...)")
    m = y.shape[0]
    return y.reshape(m, k, y.shape[1] // k, *y.shape[2:]).transpose(0, 1) \
        .reshape(k * m, y.shape[1] // k, *y.shape[2:])


class _Packed:
    """Packed forwards of the parameterized layers for one grouped call of k micro-batches.

    ``weights[id(p)]``: the stacked (k, *shape) tensor standing for parameter p.
    ``stats``: when given (the clean pass), each BatchNorm that tracks statistics in training
    mode adds its k micro-batch means and unbiased variances, (k, C) each.
    """

    def __init__(self, k: int, weights: dict[int, torch.Tensor], stats: dict | None) -> None:
        self.k, self.weights, self.stats = k, weights, stats
        self.updated: set[nn.Module] = set()

    def stacked(self, p: torch.Tensor | None) -> torch.Tensor | None:
        if p is None:
            return None
        w = self.weights.get(id(p))
        return p.detach().expand(self.k, *p.shape) if w is None else w

    def flat(self, p: torch.Tensor | None) -> torch.Tensor | None:
        w = self.stacked(p)
        return None if w is None else w.reshape(-1, *w.shape[2:])

    def conv(self, mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return _CONVS[type(mod)](
            x, self.flat(mod.weight), self.flat(mod.bias), mod.stride, mod.padding, mod.dilation,
            mod.groups * self.k,
        )

    def linear(self, mod: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """(m, k*in) -> (m, k*out); (m, k*L, ..., in) -> (m, k*L, ..., out)."""
        k, m = self.k, x.shape[0]
        if x.dim() < 2 or x.shape[1] % k:
            raise RuntimeError(f"grouped m-sharpness: {mod} got an input of shape {tuple(x.shape)}")
        xs = x.reshape(m, k, -1, mod.in_features).transpose(0, 1).reshape(k, -1, mod.in_features)
        w, b = self.stacked(mod.weight), self.stacked(mod.bias)
        out = torch.bmm(xs, w.mT) if b is None else torch.baddbmm(b.unsqueeze(1), xs, w.mT)
        if x.dim() == 2:
            return out.view(k, m, -1).transpose(0, 1).reshape(m, -1)
        middle = (x.shape[1] // k, *x.shape[2:-1])
        return out.view(k, m, *middle, -1).transpose(0, 1) \
            .reshape(m, k * middle[0], *middle[1:], -1)

    def norm(self, mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.flat(mod.weight), self.flat(mod.bias)
        if isinstance(mod, nn.GroupNorm):
            return F.group_norm(x, mod.num_groups * self.k, weight, bias, mod.eps)
        tracked = mod.track_running_stats and mod.running_mean is not None
        if not mod.training and tracked:  # eval: the running statistics, for every micro-batch
            return F.batch_norm(
                x, mod.running_mean.repeat(self.k), mod.running_var.repeat(self.k), weight, bias,
                False, 0.0, mod.eps,
            )
        if self.stats is None or not tracked:
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, mod.eps)
        if mod in self.updated:  # the loop would interleave its updates micro-batch by micro-batch
            raise RuntimeError(f"grouped m-sharpness: {mod} ran twice in one forward")
        self.updated.add(mod)
        # momentum 1: the buffers receive exactly each micro-batch's mean and unbiased variance
        channels = x.shape[1]
        mean = torch.zeros(channels, dtype=mod.running_mean.dtype, device=x.device)
        var = torch.ones(channels, dtype=mod.running_var.dtype, device=x.device)
        out = F.batch_norm(x, mean, var, weight, bias, True, 1.0, mod.eps)
        self.stats.setdefault(mod, []).append((mean.view(self.k, -1), var.view(self.k, -1)))
        return out


@contextmanager
def _packed_forwards(layers: list[nn.Module], packed: _Packed) -> Iterator[None]:
    """Route each layer's forward to its packed version for the body (then remove the override)."""
    def bind(mod: nn.Module):
        if type(mod) in _CONVS:
            return lambda x: packed.conv(mod, x)
        if type(mod) is nn.Linear:
            return lambda x: packed.linear(mod, x)
        return lambda x: packed.norm(mod, x)

    with ExitStack() as stack:
        for mod in layers:
            mod.forward = bind(mod)
            stack.callback(mod.__dict__.pop, "forward", None)
        yield


def _grouped_passes(ctx, model, layers, x, y, loss_fn, k, autocast, scale, stats):
    """Both passes for one chunk of k micro-batches: outputs, losses and the summed final gradient."""
    ctx = as_context(ctx)
    params = ctx.params
    counted = _counted(loss_fn, y, k)
    obf = ctx.obf_kwargs() if ctx.spec.direction == "obf" else None
    xp = pack(x, k)

    def objective(weights: list[torch.Tensor], clean: bool):
        packed = _Packed(k, {id(p): w for p, w in zip(params, weights)}, stats if clean else None)
        with _packed_forwards(layers, packed), torch.enable_grad(), autocast:
            out = unpack(model(xp), k)
            losses = _micro_losses(loss_fn, out, y, k, counted)
            # OBF's surrogate is a per-example mean: k times it is sum_j obj_j
            obj = obf_surrogate(out, y, **obf) * k if clean and obf is not None else losses.sum()
        return out, losses, obj

    # k copies of w (expand + clone: one copy each, cheaper than repeat on small tensors)
    clean = [p.detach().expand(k, *p.shape).clone().requires_grad_() for p in params]
    if ctx.spec.direction == "random":  # randsam: the clean pass only gives outputs
        with torch.no_grad():
            out, losses, _ = objective(clean, True)
        direction = random_direction(params, k, ctx.generator)  # micro-batch by micro-batch
    else:
        out, losses, obj = objective(clean, True)
        g = torch.autograd.grad(obj * scale if scale != 1.0 else obj, clean, allow_unused=True)
        direction = _unscaled(clean, g, scale)
    with torch.no_grad():
        e = ctx.perturbation(direction, params)
        shifted = [c.detach().add_(e_n).requires_grad_() for c, e_n in zip(clean, e)]  # w + e_j
    p_out, p_losses, p_obj = objective(shifted, False)
    gp = torch.autograd.grad(p_obj * scale if scale != 1.0 else p_obj, shifted, allow_unused=True)
    with torch.no_grad():
        final = [f.sum(0) for f in ctx.final(direction, _unscaled(shifted, gp, scale))]
    return out.detach(), losses.detach(), p_out.detach(), p_losses.detach(), final


def _unscaled(weights, grads, scale: float) -> list[torch.Tensor]:
    """Gradients for the stacked weights, unscaled (zeros for a weight the loss does not use)."""
    return [
        torch.zeros_like(w) if g is None else (g / scale if scale != 1.0 else g)
        for w, g in zip(weights, grads)
    ]


def grouped_pass(
    ctx: PathContext | Any, model: nn.Module, inputs, targets, loss_fn, k: int, autocast, scale: float
) -> tuple[StepOutput, list[torch.Tensor]]:
    """Both m-sharpness passes as grouped passes; same contract as ``vectorized_pass``.

    Raises RuntimeError when the model does not fit (the caller then uses another path).
    """
    ctx = as_context(ctx)
    cached = _cached(ctx, model)
    if not supported(ctx, model):
        raise RuntimeError(
            "grouped m-sharpness needs every optimized parameter in a Conv, Linear, BatchNorm or "
            "GroupNorm layer and no other module with parameters, buffers or hooks."
        )
    layers, custom = cached[1]
    if custom and not cached[2]:
        _check_against_loop(ctx, model, layers, inputs, targets, loss_fn, k, autocast, scale)
        cached[2] = True
    return _run(ctx, model, layers, inputs, targets, loss_fn, k, autocast, scale)


def _run(ctx, model, layers, inputs, targets, loss_fn, k, autocast, scale):
    ctx = as_context(ctx)
    m = inputs.shape[0] // k
    c = chunk_size(ctx, k)
    stats: dict = {}
    final: list[torch.Tensor] | None = None
    parts = []
    for lo in range(0, k, c):
        n = min(c, k - lo)
        rows = slice(lo * m, (lo + n) * m)
        part = _grouped_passes(
            ctx, model, layers, inputs[rows], targets[rows], loss_fn, n, autocast, scale, stats
        )
        if final is None:
            final = part[4]
        else:
            torch._foreach_add_(final, part[4])
        parts.append(part)
    torch._foreach_div_(final, k)
    _commit_running_stats(stats, k)
    out, losses, p_out, p_losses = (torch.cat([p[i] for p in parts]) for i in range(4))
    return StepOutput(losses.mean(), out, p_losses.mean(), p_out), final


@torch.no_grad()
def _commit_running_stats(stats: dict, k: int) -> None:
    """One momentum update per micro-batch, in micro-batch order, as the loop's clean passes do."""
    for mod, chunks in stats.items():
        for i, name in enumerate(("running_mean", "running_var")):
            batch_stats = torch.cat([chunk[i] for chunk in chunks])  # (k, C), micro-batch order
            start = getattr(mod, name)
            alone = (1.0 - mod.momentum) * start + mod.momentum * batch_stats  # each on its own
            start.copy_(compose_running_stats(start, alone, mod.momentum))
        mod.num_batches_tracked.add_(k)


def _check_against_loop(ctx, model, layers, inputs, targets, loss_fn, k, autocast, scale) -> None:
    """Compare a grouped step with the loop on this batch's first two micro-batches (any mixing
    of micro-batches shows there); raise when they disagree.

    The comparison runs in float64: the model's parameters and buffers, the batch and both
    paths (then the original tensors are put back, the very same objects). In float32, a deep
    BatchNorm network amplifies rounding so much that the loop itself is a few percent away
    from the exact answer (samtune's resnet18 at init, m = 8: 3e-2 relative) and no tolerance
    separates that from a real mismatch; in float64 the grouped path agrees with the loop to
    about 1e-14 when it is exact, while mixing micro-batches (``torch.cat`` along channels)
    changes the result at order one. A model or loss that cannot run in float64 (the loop
    itself fails there) is compared in its own precision instead, with ``CHECK_RTOL``
    (5e-2 under autocast).
    """
    ctx = as_context(ctx)
    k, rows = min(k, 2), min(k, 2) * (inputs.shape[0] // k)  # two micro-batches show any mixing
    inputs, targets = inputs[:rows], targets[:rows]
    x64 = inputs.double() if inputs.is_floating_point() else inputs
    y64 = targets.double() if targets.is_floating_point() else targets
    with _float64(model):
        try:
            ref = _reference(ctx, model, x64, y64, loss_fn, k, _NO_AUTOCAST, 1.0)
        except RuntimeError:
            ref = None  # this model or loss does not run in float64
        if ref is not None:
            gap = _gap_to(ref, ctx, model, layers, x64, y64, loss_fn, k, _NO_AUTOCAST, 1.0)
            rtol = CHECK_RTOL_FLOAT64
    if ref is None:
        ref = _reference(ctx, model, inputs, targets, loss_fn, k, autocast, scale)
        gap = _gap_to(ref, ctx, model, layers, inputs, targets, loss_fn, k, autocast, scale)
        rtol = 5e-2 if isinstance(autocast, torch.autocast) else CHECK_RTOL
    if not gap <= rtol:
        raise RuntimeError(
            f"grouped m-sharpness disagrees with the loop on this model (relative difference "
            f"{gap:.2g}): its forward mixes micro-batches in the packed layout (e.g. torch.cat "
            "along channels, a reshape of the batch axis)"
        )


_NO_AUTOCAST = nullcontext()


@contextmanager
def _float64(model: nn.Module) -> Iterator[None]:
    """The model's floating parameters and buffers in float64 for the body; afterwards the
    original tensors (the same objects, untouched) are put back, gradients included."""
    params = [(p, p.data, p.grad) for p in model.parameters() if p.is_floating_point()]
    buffers = [(mod, name, b) for mod in model.modules() for name, b in mod._buffers.items()
               if b is not None and b.is_floating_point()]
    try:
        for p, data, _ in params:
            p.grad = None
            p.data = data.double()
        for mod, name, b in buffers:
            mod._buffers[name] = b.double()
        yield
    finally:
        for p, data, grad in params:
            p.grad = None
            p.data = data
            p.grad = grad
        for mod, name, b in buffers:
            mod._buffers[name] = b


@contextmanager
def _isolated(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Dropout off, the random state and the BatchNorm statistics restored afterwards: a
    comparison run in it leaves no trace on training."""
    stat_mods = [mod for _, mod in bn_modules(model)]
    saved = [[getattr(m, name).clone() for name in STAT_NAMES] for m in stat_mods]
    dropouts = [mod for mod in model.modules() if isinstance(mod, _DROPOUTS) and mod.training]
    devices = [device] if device.type == "cuda" else []
    try:
        for mod in dropouts:
            mod.train(False)
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        for mod in dropouts:
            mod.train(True)
        with torch.no_grad():
            for mod, stats in zip(stat_mods, saved):
                for name, value in zip(STAT_NAMES, stats):
                    getattr(mod, name).copy_(value)


@contextmanager
def _generator_kept(generator: torch.Generator | None) -> Iterator[None]:
    """randsam's generator as it was before the body: both sides of the check draw the same
    noise, and training draws as if no check had run (None: the global state, forked by
    :func:`_isolated`)."""
    state = None if generator is None else generator.get_state()
    try:
        yield
    finally:
        if state is not None:
            generator.set_state(state)


def _bn_stats(model: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for _, mod in bn_modules(model) for b in (mod.running_mean, mod.running_var)]


def _reference(ctx, model, inputs, targets, loss_fn, k, autocast, scale) -> list[torch.Tensor]:
    """The loop's final gradients and BatchNorm statistics on this batch, leaving no trace."""
    ctx = as_context(ctx)
    try:
        with _isolated(model, inputs.device), _generator_kept(ctx.generator):
            _, final = _msharp_loop.loop_pass(ctx, model, inputs, targets, loss_fn, k, autocast, scale)
            return [*final, *_bn_stats(model)]
    finally:
        ctx.clear_grads()


def _gap_to(ref, ctx, model, layers, inputs, targets, loss_fn, k, autocast, scale) -> float:
    """The grouped step's relative difference from ``ref`` on this batch, leaving no trace."""
    ctx = as_context(ctx)
    try:
        with _isolated(model, inputs.device), _generator_kept(ctx.generator):
            _, final = _run(ctx, model, layers, inputs, targets, loss_fn, k, autocast, scale)
            return _relative_gap([*final, *_bn_stats(model)], ref)
    finally:
        ctx.clear_grads()


def _relative_gap(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """Largest ||got - ref|| / (||ref|| + 1e-3 ||all ref||) over the tensors (NaN stays NaN)."""
    scale = math.sqrt(sum(float(r.double().pow(2).sum()) for r in ref))
    gaps = [
        float((g.double() - r.double()).norm()) / (float(r.double().norm()) + 1e-3 * scale + 1e-12)
        for g, r in zip(got, ref)
    ]
    return max(gaps, default=0.0)
