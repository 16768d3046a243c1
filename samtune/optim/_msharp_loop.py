"""The reference m-sharpness path: a Python loop over the k micro-batches, each with its own e_j.

Each micro-batch runs the clean pass at w, climbs to w + e_j, runs the perturbed pass with
BatchNorm statistics frozen (``_bn.py``) and comes back to w bit for bit. Always possible; every
other path is tested against it.
"""

from __future__ import annotations

import torch
from torch import nn

from samtune.optim._bn import bn_modules, frozen_bn_stats
from samtune.optim._context import PathContext, as_context
from samtune.optim._output import StepOutput, concatenated
from samtune.optim._perturb import obf_surrogate, random_direction


def grads(params: list[torch.nn.Parameter], scale: float = 1.0) -> list[torch.Tensor]:
    """The gradients in ``p.grad``, unscaled; not copied when ``scale`` is 1.

    The caller must not let a later backward accumulate into them: the passes zero the
    gradients with ``set_to_none=True``, so autograd allocates fresh ones.
    """
    out = [torch.zeros_like(p) if p.grad is None else p.grad.detach() for p in params]
    return torch._foreach_div(out, scale) if scale != 1.0 else out


def direction(ctx: PathContext, scale: float = 1.0) -> list[torch.Tensor]:
    """The ascent direction of one batch (parameter-shaped): p.grad, or noise for randsam."""
    if ctx.spec.direction == "random":
        return [n[0] for n in random_direction(ctx.params, 1, ctx.generator)]
    return grads(ctx.params, scale)


def climb(ctx: PathContext, e: list[torch.Tensor]) -> list[torch.Tensor]:
    """Move to w + e (parameter-shaped); returns a bit-exact copy of w for :func:`restore`."""
    params = ctx.params
    ids = [id(p) for p in params] + [params[0].dtype if params else None]
    if ctx.cache.get("backup_ids") != ids:  # buffers reused from step to step (same tensors, dtype)
        ctx.cache["backup"] = [torch.empty_like(p) for p in params]
        ctx.cache["backup_ids"] = ids
    backup = ctx.cache["backup"]
    torch._foreach_copy_(backup, params)
    torch._foreach_add_(params, e)
    return backup


def restore(params: list[torch.nn.Parameter], backup: list[torch.Tensor]) -> None:
    torch._foreach_copy_(params, backup)  # back to w, bit for bit


def supported(ctx: PathContext, model: nn.Module, k: int, inputs, autocast: bool) -> bool:
    return True


def loop_pass(owner, model, inputs, targets, loss_fn, k, autocast, scale):
    """Both passes on k micro-batches, one after the other: (outputs, final gradient)."""
    ctx = as_context(owner)
    bns = bn_modules(model)
    if k == 1:
        return sam_pass(ctx, model, bns, inputs, targets, loss_fn, autocast, scale)
    final: list[torch.Tensor] | None = None
    parts = []
    for x_j, y_j in zip(inputs.chunk(k), targets.chunk(k)):
        part, final_j = sam_pass(ctx, model, bns, x_j, y_j, loss_fn, autocast, scale)
        if final is None:
            final = torch._foreach_div(final_j, k)
        else:
            torch._foreach_add_(final, final_j, alpha=1.0 / k)
        parts.append(part)
    return concatenated(parts), final


def sam_pass(ctx: PathContext, model, bns, inputs, targets, loss_fn, autocast, scale):
    """Both passes on one (micro-)batch: the clean pass at w, the perturbed one at w + e.

    Returns the outputs and the final gradient (unscaled). The gradients are taken from
    ``p.grad`` without copies; ``p.grad`` is left to the caller.
    """
    params = ctx.params
    ctx.clear_grads()
    with torch.enable_grad(), autocast:
        if ctx.spec.direction == "random":
            with torch.no_grad():
                out = model(inputs)
                loss = loss_fn(out, targets)
        else:
            out = model(inputs)
            loss = loss_fn(out, targets)
            obj = obf_surrogate(out, targets, **ctx.obf_kwargs()) \
                if ctx.spec.direction == "obf" else loss
    if ctx.spec.direction != "random":
        (obj * scale if scale != 1.0 else obj).backward()
    with torch.no_grad():
        d = direction(ctx, scale)
        backup = climb(ctx, ctx.perturbation(d, params, batched=False))
    ctx.clear_grads()  # fresh tensors: d keeps the ascent gradient
    with frozen_bn_stats(bns), torch.enable_grad(), autocast:
        p_out = model(inputs)
        p_loss = loss_fn(p_out, targets)
    (p_loss * scale if scale != 1.0 else p_loss).backward()
    with torch.no_grad():
        restore(params, backup)
        final = ctx.final_one(d, grads(params, scale))
    output = StepOutput(loss.detach(), out.detach(), p_loss.detach(), p_out.detach())
    return output, final
