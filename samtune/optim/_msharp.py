"""Vectorized m-sharpness: all micro-batch perturbations in one batched call (torch.func).

The batch of B examples is viewed as k = B/m micro-batches; ``vmap(grad(...))`` gives every
micro-batch's gradient at once, each micro-batch gets its own e_j, and a second batched call gives
the gradients at w + e_j. The model itself is never modified (``functional_call``), so the
weights need no restoring. A batched call holds, per micro-batch, 4 parameter-sized tensors and
that micro-batch's saved activations (measured once per shape); chunks are sized to fit
``msharp_memory_mb``. Results equal the loop
in ``_sam.py`` (up to float rounding), BatchNorm running statistics included (``_bn.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from samtune.optim._bn import bn_modules, compose_running_stats, frozen_bn_stats
from samtune.optim._context import PathContext, as_context
from samtune.optim._output import StepOutput
from samtune.optim._perturb import obf_surrogate, random_direction


def _names(ctx: PathContext | Any, model: nn.Module) -> list[str] | None:
    """Model names of the optimizer's parameters, in the optimizer's order (None if foreign)."""
    ctx = as_context(ctx)
    by_id = {id(p): n for n, p in model.named_parameters()}
    names = [by_id.get(id(p)) for p in ctx.params]
    return None if any(n is None for n in names) else names  # type: ignore[return-value]


def supported(ctx: PathContext | Any, model: nn.Module, *, autocast: bool = False) -> bool:
    """Whether the vectorized path can reproduce the loop for this model."""
    ctx = as_context(ctx)
    if _names(ctx, model) is None:
        return False
    bns = bn_modules(model)
    if autocast and bns:  # torch's batching rule for batch_norm rejects low-precision inputs
        return False
    # BN with momentum=None (cumulative average) has no per-update composition rule.
    return all(mod.momentum is not None for _, mod in bns)


def chunk_size(ctx: PathContext | Any, model: nn.Module, k: int, inputs: torch.Tensor | None = None) -> int:
    """Micro-batches per batched call so that one call's tensors fit ``msharp_memory_mb``.

    Per micro-batch: 4 parameter-sized stacked tensors (gradient, e, w + e, perturbed gradient)
    plus the activations a micro-batch's forward saves for its backward, measured once per
    micro-batch shape when ``inputs`` (the batch) is given.
    """
    ctx = as_context(ctx)
    per_micro = 4 * sum(p.numel() * p.element_size() for p in ctx.params)
    if inputs is not None:
        per_micro += saved_activation_bytes(ctx, model, inputs[: inputs.shape[0] // k])
    fit = int(ctx.memory_mb * 2**20 // max(1, per_micro))
    return max(1, min(k, fit))


def saved_activation_bytes(ctx: PathContext | Any, model: nn.Module, x: torch.Tensor) -> int:
    """Bytes the forward of ``x`` keeps for backward (cached per shape; weights excluded).

    One forward with ``saved_tensors_hooks`` counting what autograd would keep, with BatchNorm
    statistics frozen and the random state restored, so training is not changed by it.
    """
    ctx = as_context(ctx)
    cache = ctx.cache.setdefault("_saved_bytes", {})
    key = (tuple(x.shape), x.dtype, x.device)
    if key not in cache:
        weights = {p.data_ptr() for p in model.parameters()}
        total = 0

        def pack(t: torch.Tensor) -> None:
            nonlocal total
            if t.data_ptr() not in weights:
                total += t.numel() * t.element_size()

        def unpack(_: None) -> torch.Tensor:
            raise RuntimeError("the activation probe's graph is never differentiated")

        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), frozen_bn_stats(bn_modules(model)), \
                torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            model(x)
        cache[key] = total
    return cache[key]


def vectorized_pass(
    ctx: PathContext | Any, model: nn.Module, inputs, targets, loss_fn, k: int, autocast, scale: float
) -> tuple[StepOutput, list[torch.Tensor]]:
    ctx = as_context(ctx)
    names = _names(ctx, model)
    if names is None:
        raise RuntimeError("the optimizer's parameters are not all parameters of this model")
    params = ctx.params
    diff = {n: p.detach() for n, p in zip(names, params)}
    named_bns = bn_modules(model)
    stat_names = [
        f"{name}.{s}" for name, mod in named_bns if mod.training
        for s in ("running_mean", "running_var", "num_batches_tracked")
    ]
    state = {n: t.detach() for n, t in model.named_parameters() if n not in diff}
    state.update({n: b for n, b in model.named_buffers() if n not in stat_names})
    start = {n: b.detach().clone() for n, b in model.named_buffers() if n in stat_names}
    obf = {k_: ctx.variant_kwargs[k_] for k_ in ("gamma", "C", "prob")} \
        if ctx.spec.direction == "obf" else None

    def stacked(c: int) -> dict[str, torch.Tensor]:
        return {n: b.unsqueeze(0).repeat(c, *([1] * b.dim())) for n, b in start.items()}

    def forward(p, stats, x, y):
        with autocast:
            out = functional_call(model, (p, stats, state), (x,))
            loss = loss_fn(out, y)
        return out, loss

    def clean_objective(p, stats, x, y):
        out, loss = forward(p, stats, x, y)
        obj = obf_surrogate(out, y, **obf) if obf is not None else loss
        return obj * scale, (out.detach(), loss.detach())

    def perturbed_objective(p, stats, x, y):
        out, loss = forward(p, stats, x, y)
        return loss * scale, (out.detach(), loss.detach())

    m = inputs.shape[0] // k
    xs = inputs.reshape(k, m, *inputs.shape[1:])
    ys = targets.reshape(k, m, *targets.shape[1:])
    c = chunk_size(ctx, model, k, inputs)
    final = [torch.zeros_like(p) for p in params]
    outs, pouts, losses, plosses, stats_after = [], [], [], [], []
    for lo in range(0, k, c):
        xc, yc = xs[lo:lo + c], ys[lo:lo + c]
        n_c = xc.shape[0]
        stats = stacked(n_c)
        if ctx.spec.direction == "random":
            with torch.no_grad():
                out, loss = vmap(forward, in_dims=(None, 0, 0, 0), randomness="different")(
                    diff, stats, xc, yc
                )
            direction = random_direction(params, n_c, ctx.generator)
        else:
            g, (out, loss) = vmap(
                grad(clean_objective, has_aux=True),
                in_dims=(None, 0, 0, 0), randomness="different",
            )(diff, stats, xc, yc)
            direction = [g[n] / scale if scale != 1.0 else g[n] for n in names]
        stats_after.append(stats)
        with torch.no_grad():
            e = ctx.perturbation(direction, params)
            shifted = {n: diff[n].unsqueeze(0) + e_n for n, e_n in zip(names, e)}  # w + e_j
        gp, (p_out, p_loss) = vmap(
            grad(perturbed_objective, has_aux=True), in_dims=(0, 0, 0, 0), randomness="different"
        )(shifted, stacked(n_c), xc, yc)
        g_p = [gp[n] / scale if scale != 1.0 else gp[n] for n in names]
        with torch.no_grad():
            for acc, f in zip(final, ctx.final(direction, g_p)):
                acc.add_(f.sum(0), alpha=1.0 / k)
        outs.append(out.reshape(-1, *out.shape[2:]))
        pouts.append(p_out.reshape(-1, *p_out.shape[2:]))
        losses.append(loss)
        plosses.append(p_loss)
    _commit_running_stats(model, named_bns, start, stats_after)
    output = StepOutput(
        torch.cat(losses).mean(), torch.cat(outs), torch.cat(plosses).mean(), torch.cat(pouts)
    )
    return output, final


@torch.no_grad()
def _commit_running_stats(model, named_bns, start, stats_after) -> None:
    """Apply the clean passes' BN updates as the loop would: one per micro-batch, in order."""
    for name, mod in named_bns:
        if not mod.training:
            continue
        for s in ("running_mean", "running_var"):
            per_micro = torch.cat([st[f"{name}.{s}"] for st in stats_after])
            r0 = start[f"{name}.{s}"]
            getattr(mod, s).copy_(compose_running_stats(r0, per_micro, mod.momentum))
        count = sum(st[f"{name}.num_batches_tracked"].shape[0] for st in stats_after)
        mod.num_batches_tracked.add_(count)
