"""Fused m-sharpness for models whose trainable parameters all live in ``nn.Linear`` layers.

Exact (equal to the micro-batch loop in ``_sam.py`` up to float rounding) and two full-batch
passes long, because a Linear layer's micro-batch gradients and perturbed forwards are low-rank.
The batch of B examples is k micro-batches of m; for a layer with clean input a (B, in) and
output z (B, out), micro-batch j owns rows j*m .. (j+1)*m of each.

Pass 1 (clean). One forward with hooks recording each layer's a and z; the objective is the sum
of the per-micro-batch objectives, obj = sum_j obj_j (the loss, or OBF's surrogate), so one
``autograd.grad(obj, z)`` gives every micro-batch's output gradients delta (B, out) and no
weight-gradient matmul at all. Micro-batch j's gradient is G_j = delta_j^T a_j (weight) and
s_j = delta_j summed over its rows (bias), and its squared norm needs no G_j:

    ||G_j||^2 = sum((a_j a_j^T) * (delta_j delta_j^T))   (two m x m Gram matrices)

so norm_j = sqrt(sum over layers of ||G_j||^2 + ||s_j||^2) + EPS, and e_j = c_j * g_j with
c_j = rho / norm_j (each parameter's own rho: weight and bias may sit in different groups).

Pass 2 (perturbed). One forward at the unchanged weights, with hooks adding to each layer's
output, for micro-batch j and this pass's input x (B, in):

    correction_j = c_w,j * (x_j a_j^T) delta_j + c_b,j * s_j  =  x_j E_j^T + e_b,j

so the layer computes x_j (W + E_j)^T + b + e_b,j, the forward at w + e_j, for m x (in + out)
per example instead of in x out (it pays while m < in*out / (in + out)). When weight and bias
share a rho, the bias is the weight of a constant input 1: the Gram matrix becomes
a_j a_j^T + 1 and the correction (x_j a_j^T + 1) c_j delta_j, with no separate bias terms. a, delta and c are
constants; the gradient of (1/k) sum_j L_j through the module's own matmul is then
(1/k) sum_j grad L_j(w + e_j), the m-sharpness gradient. Weights are never modified.

ASAM (``adaptive``): T = |w| + eta elementwise breaks the low rank, so each micro-batch's weight
gradient G_j = delta_j^T a_j is formed (one batched matmul, the flops of one full-batch weight
gradient), scaled to E_j = c_j T^2 G_j with c_j = rho / ||T g_j||, and pass 2 runs each layer as
one batched matmul with W + E_j (``_ShiftedLinear``: its backward gives W the full-batch
gradient). Memory: two parameter-sized tensors per micro-batch, bounded by ``msharp_memory_mb``.

GSAM (``gsam``): the final gradient is mean_j of g_p,j - alpha (g_j - coef_j g_p,j), with
coef_j = <g_j, g_p,j> / ||g_p,j||^2. Both are low-rank (g_p,j = delta'_j^T x_j from pass 2's
output gradients delta' and inputs x), so coef_j needs m x m Gram matrices only, and the mean
is two full-batch matmuls with rows weighted per micro-batch (:func:`_gsam_final`). OBF
replaces g_j by its own direction in both, as in the loop.

randsam: the noise n_j is drawn as the loop draws it (micro-batch by micro-batch, in parameter
order) and runs pass 2 like ASAM, with E_j = rho n_j / ||n_j||.

Every variant, and only models built from Linear layers and parameter-free per-example
modules: see :func:`supported`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from samtune.optim._context import PathContext, as_context
from samtune.optim._output import StepOutput
from samtune.optim._perturb import EPS, obf_surrogate, random_direction

# Parameter-free modules that treat every example on its own (exact types: a subclass may
# override forward). samtune's own ``mlp`` (samtune/models/mlp.py) is an nn.Sequential of
# Flatten, Linear and ReLU (BatchNorm1d only when asked for), so these cover it.
_PER_EXAMPLE = (
    nn.Sequential, nn.ModuleList, nn.Identity,
    nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus,
)

ADAPTIVE_COPIES = 2  # ASAM: parameter-sized tensors per micro-batch (T G_j, then E_j in place; bmm out)
Layer = tuple[nn.Linear, "int | None", "int | None"]  # module, index of weight / bias in params


def _per_example(mod: nn.Module) -> bool:
    if mod._forward_hooks or mod._forward_pre_hooks or getattr(mod, "inplace", False):
        return False  # a hook may rewrite inputs or outputs; in-place ops rewrite the recorded z
    kind = type(mod)
    if kind is nn.Linear or kind in _PER_EXAMPLE:
        return True
    if kind is nn.Flatten:
        return mod.start_dim >= 1  # never folds the batch axis
    if kind is nn.Unflatten:
        return isinstance(mod.dim, int) and mod.dim >= 1
    if kind is nn.Dropout:
        return mod.p == 0 or not mod.training
    return False


def _layers(ctx: PathContext | Any, model: nn.Module) -> list[Layer] | None:
    """The Linear layers holding the optimizer's parameters; None if the model is unsupported.

    Unsupported: a module outside the whitelist, a buffer that requires grad, an optimizer
    parameter outside the model's Linear layers, or one shared by two layers.
    """
    ctx = as_context(ctx)
    index = {id(p): i for i, p in enumerate(ctx.params)}
    layers, found = [], 0
    for mod in model.modules():
        if not _per_example(mod) or any(b.requires_grad for b in mod.buffers(recurse=False)):
            return None
        if type(mod) is not nn.Linear:
            continue
        w = index.get(id(mod.weight))
        b = index.get(id(mod.bias)) if mod.bias is not None else None
        if w is not None or b is not None:
            layers.append((mod, w, b))
            found += (w is not None) + (b is not None)
    return layers if index and found == len(index) else None


def supported(ctx: PathContext | Any, model: nn.Module) -> bool:
    """Whether :func:`fused_pass` reproduces the loop for this optimizer and model."""
    ctx = as_context(ctx)
    return _direction_ok(ctx) and _layers(ctx, model) is not None


def fits(ctx: PathContext | Any, k: int) -> bool:
    """Whether k micro-batches fit the memory bound: ASAM forms each micro-batch's weight
    gradient and perturbation (ADAPTIVE_COPIES parameter-sized tensors per micro-batch); SAM's
    and GSAM's low-rank factors are the size of the batch's activations."""
    ctx = as_context(ctx)
    if not (ctx.spec.adaptive or ctx.spec.direction == "random"):
        return True
    per_micro = ADAPTIVE_COPIES * sum(p.numel() * p.element_size() for p in ctx.params)
    return k * per_micro <= ctx.memory_mb * 2**20


def _direction_ok(ctx: PathContext | Any) -> bool:
    ctx = as_context(ctx)
    return ctx.spec.direction in ("loss", "obf", "random")


def _micro_losses(loss_fn, out: torch.Tensor, targets: torch.Tensor, k: int,
                  counted: torch.Tensor | None) -> torch.Tensor:
    """The k micro-batch losses, (k,): one call for F.cross_entropy, else one per micro-batch.

    ``counted``: each micro-batch's number of targets F.cross_entropy averages over (those not
    equal to its ignore_index), from :func:`_counted`.
    """
    if loss_fn is F.cross_entropy:  # its mean, micro-batch by micro-batch (ignore_index included)
        per = F.cross_entropy(out, targets, reduction="none").view(k, -1)
        return per.mean(1) if counted is None else per.sum(1) / counted
    return torch.stack([loss_fn(o, t) for o, t in zip(out.chunk(k), targets.chunk(k))])


def _counted(loss_fn, targets: torch.Tensor, k: int) -> torch.Tensor | None:
    if loss_fn is not F.cross_entropy or targets.is_floating_point():
        return None  # probability targets: a plain mean
    return (targets != -100).view(k, -1).sum(1)


@contextmanager
def _hooked(layers: list[Layer], hook: Callable) -> Iterator[None]:
    handles = [mod.register_forward_hook(hook) for mod, _, _ in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _forwards_replaced(layers: list[Layer], make: Callable) -> Iterator[None]:
    """Each layer's forward replaced by ``make(layer)`` for the body (an instance attribute,
    always removed again)."""
    try:
        for mod, _, _ in layers:
            mod.forward = make(mod)
        yield
    finally:
        for mod, _, _ in layers:
            mod.__dict__.pop("forward", None)


class _ShiftedLinear(torch.autograd.Function):
    """x_j (W + E_j)^T + b + e_b,j for the k micro-batches of x, (B, in) -> (B, out).

    E_j and e_b,j are constants; the backward gives x its gradient through W + E_j and W, b the
    sum over micro-batches (one full-batch matmul): the gradient of sum_j L_j(w + e_j).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, e_w, e_b, k):
        dtype = (e_w if e_w is not None else e_b).dtype
        xs = x.reshape(k, -1, x.shape[-1])
        xs = xs if xs.dtype == dtype else xs.to(dtype)
        w = weight.detach().to(dtype)
        # (k, out, in): W + E_j, in place (E_j is not needed again); same layout, no strided add
        w_k = w.unsqueeze(0) if e_w is None else e_w.add_(w)
        shift = None if bias is None else bias.detach().to(dtype)
        if e_b is not None:
            shift = e_b if shift is None else e_b.add(shift)
        w_kt = w_k.expand(k, -1, -1).mT  # a transposed operand: bmm reads it as it lies
        if shift is None:
            out = torch.bmm(xs, w_kt)
        else:
            out = torch.baddbmm(shift.expand(k, 1, -1), xs, w_kt)
        ctx.save_for_backward(xs, w_k)
        ctx.shapes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return out.reshape(x.shape[0], -1).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        xs, w_k = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.shapes
        k = xs.shape[0]
        g = grad.reshape(k, -1, grad.shape[-1]).to(w_k.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(g, w_k.expand(k, -1, -1)).reshape(-1, xs.shape[-1]).to(x_dtype)
        if ctx.needs_input_grad[1]:
            grad_w = (g.flatten(0, 1).mT @ xs.flatten(0, 1)).to(w_dtype)
        if b_dtype is not None and ctx.needs_input_grad[2]:
            grad_b = g.sum((0, 1)).to(b_dtype)
        return grad_x, grad_w, grad_b, None, None, None


def _layer_input(mod: nn.Module, args: tuple, seen, batch: int) -> torch.Tensor:
    """The layer's input, after checking the assumptions the low-rank maths rest on."""
    if mod in seen:
        raise RuntimeError(
            f"fused m-sharpness: {mod} ran twice in one forward; it needs each Linear called once."
        )
    x = args[0] if len(args) == 1 else None
    if x is None or x.dim() != 2 or x.shape[0] != batch:
        shape = None if x is None else tuple(x.shape)
        raise RuntimeError(
            f"fused m-sharpness: {mod} got an input of shape {shape}; it needs (batch={batch}, "
            "features) passed positionally."
        )
    return x


def fused_pass(
    ctx: PathContext | Any, model: nn.Module, inputs, targets, loss_fn, k: int, autocast, scale: float
) -> tuple[StepOutput, list[torch.Tensor]]:
    """Both m-sharpness passes in two full-batch forwards; same contract as ``vectorized_pass``.

    Raises RuntimeError when the model or a forward does not fit the assumptions (the caller
    falls back to another path).
    """
    ctx = as_context(ctx)
    cached = ctx.cache.get("_fused_layers")
    if cached is None or cached[0] is not model:  # the static check, once per model
        cached = ctx.cache["_fused_layers"] = (model, _layers(ctx, model))
    layers = cached[1]
    if layers is None or not _direction_ok(ctx):
        raise RuntimeError(
            "fused m-sharpness needs a loss or obf direction (not randsam) and a model of "
            "nn.Linear layers and per-example, parameter-free modules."
        )
    if not fits(ctx, k):
        raise RuntimeError(
            f"fused m-sharpness: ASAM's {k} per-micro-batch weight copies exceed "
            f"msharp_memory_mb={ctx.memory_mb:g}."
        )
    params, rhos = ctx.params, ctx.rhos
    batch = inputs.shape[0]
    m = batch // k

    # pass 1: clean forward, recording each layer's input a and output z
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(mod, args, out):
        seen[mod] = (_layer_input(mod, args, seen, batch).detach(), out)

    random = ctx.spec.direction == "random"  # randsam: the clean pass only gives outputs
    with _hooked(layers, record), torch.set_grad_enabled(not random), autocast:
        out = model(inputs)
        _check_output(out, batch)
        counted = _counted(loss_fn, targets, k)
        losses = _micro_losses(loss_fn, out, targets, k, counted)
        if ctx.spec.direction == "obf":  # per-example, so k x the batch mean = sum_j obj_j
            obj = obf_surrogate(out, targets, **ctx.obf_kwargs()) * k
        else:
            obj = losses.sum()
    missing = [mod for mod, _, _ in layers if mod not in seen]
    if missing:
        raise RuntimeError(f"fused m-sharpness: {missing[0]} never ran in the forward pass.")

    # micro-batch norms, then each layer's perturbation: low-rank for SAM, per micro-batch for
    # ASAM and randsam
    directions = None
    if random:
        with torch.no_grad():
            shift = _random_shifts(ctx, layers, rhos, k)
    else:
        zs = [seen[mod][1] for mod, _, _ in layers]
        deltas = torch.autograd.grad(obj * scale if scale != 1.0 else obj, zs, allow_unused=True)
        with torch.no_grad():
            directions = _directions(layers, seen, zs, deltas, k, m, scale)
            if ctx.spec.adaptive:
                shift = _adaptive_shifts(ctx, layers, directions, rhos, k, ctx.variant_kwargs["eta"])
            else:
                shift = _low_rank_shifts(layers, directions, rhos, k)

    # pass 2: the forward at w + e_j, for every j at once: low-rank output corrections (SAM),
    # or each micro-batch's own weights W + E_j in one batched matmul (ASAM)
    called: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def perturb(mod, args, out):
        x = _layer_input(mod, args, called, batch)
        with torch.autocast(out.device.type, enabled=False):  # correction maths in float32 or up
            corr = _correction(shift[mod], x, k, m).reshape(out.shape)
            p_z = out + (corr if corr.dtype == out.dtype else corr.to(out.dtype))
        called[mod] = (x.detach(), p_z)
        return p_z

    def shifted_forward(mod):
        def forward(*args):
            x = _layer_input(mod, args, called, batch)
            e_w, e_b = shift[mod]
            kind = x.device.type
            out_dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) \
                else torch.promote_types(x.dtype, mod.weight.dtype)  # what nn.Linear returns
            with torch.autocast(kind, enabled=False):  # the maths in float32 or up
                p_z = _ShiftedLinear.apply(x, mod.weight, mod.bias, e_w, e_b, k)
            p_z = p_z if p_z.dtype == out_dtype else p_z.to(out_dtype)
            called[mod] = (x.detach(), p_z)
            return p_z
        return forward

    if ctx.spec.adaptive or random:
        route = _forwards_replaced(layers, shifted_forward)
    else:
        route = _hooked(layers, perturb)
    with route, torch.enable_grad(), autocast:
        p_out = model(inputs)
        _check_output(p_out, batch)
        p_losses = _micro_losses(loss_fn, p_out, targets, k, counted)
    if len(called) != len(layers):
        raise RuntimeError(
            "fused m-sharpness: the perturbed forward ran other layers than the clean one."
        )
    if ctx.spec.gsam:
        final = _gsam_final(ctx, layers, directions, called, p_losses.sum(), k, m, scale)
    else:
        p_obj = p_losses.sum() / k
        grads = torch.autograd.grad(p_obj * scale if scale != 1.0 else p_obj, params,
                                    allow_unused=True)
        final = [
            torch.zeros_like(p) if g is None else (g / scale if scale != 1.0 else g)
            for p, g in zip(params, grads)
        ]
    output = StepOutput(
        losses.mean().detach(), out.detach(), p_losses.mean().detach(), p_out.detach()
    )
    return output, final


def _directions(layers, seen, zs, deltas, k: int, m: int, scale: float) -> list[tuple]:
    """Per layer, the factors of every micro-batch's direction g_j: (a, delta), (k, m, ...) each
    in float32 or up and unscaled; G_j = delta_j^T a_j (weight), s_j = delta_j^T 1 (bias)."""
    out = []
    for (mod, _, _), z, d in zip(layers, zs, deltas):
        dtype = torch.promote_types(mod.weight.dtype, torch.float32)
        a, d = seen[mod][0], torch.zeros_like(z) if d is None else d
        a = (a if a.dtype == dtype else a.to(dtype)).reshape(k, m, -1)
        d = (d if d.dtype == dtype else d.to(dtype)).reshape(k, m, -1)
        out.append((a, d / scale if scale != 1.0 else d))
    return out


def _rho_coefficients(sq_norms: list[torch.Tensor], k: int):
    """rho / (||d_j|| + EPS) per micro-batch, (k, 1, 1), one tensor per distinct rho."""
    inv_norm = 1.0 / (torch.stack(sq_norms).sum(0).sqrt() + EPS)  # (k,)
    coef: dict[float, torch.Tensor] = {}

    def c(rho: float) -> torch.Tensor:
        if rho not in coef:
            coef[rho] = (rho * inv_norm).view(k, 1, 1)
        return coef[rho]

    return c


def _low_rank_shifts(layers, directions, rhos, k: int) -> dict:
    """SAM's e_j, per layer as (a^T, c delta, e_b, fold): E_j = (c_j delta_j)^T a_j.

    ``fold``: weight and bias share a rho, so the bias is the weight of a constant input 1:
    its gradient is delta_j^T 1 and the Gram matrix of the inputs becomes a_j a_j^T + 1.
    """
    grams, parts = [], []
    for (_, w, b), (a, d) in zip(layers, directions):
        fold = w is not None and b is not None and rhos[w] == rhos[b]
        s = None if fold or b is None else d.sum(1)  # (k, out): the bias gradients s_j
        if w is not None:  # ||G_j||^2 = sum((a_j a_j^T) * (delta_j delta_j^T)), bias folded in
            gram_a = torch.bmm(a, a.mT)
            if fold:
                gram_a.add_(1.0)
            grams.append((gram_a * torch.bmm(d, d.mT)).sum((1, 2)))
        if s is not None:
            grams.append(s.pow(2).sum(1))
        parts.append((a.mT, d, s, fold))
    c = _rho_coefficients(grams, k)
    shift = {}
    for (mod, w, b), (a_t, d, s, fold) in zip(layers, parts):
        d_w = d * c(rhos[w]) if w is not None else None
        e_b = None if s is None else s.unsqueeze(1) * c(rhos[b])
        shift[mod] = (a_t, d_w, e_b, fold)
    return shift


KEEP_MB = 64.0  # ASAM's per-micro-batch weight tensors are kept between steps up to this size


def _weight_buffer(ctx: PathContext, mod: nn.Module, shape: tuple[int, ...],
                   dtype: torch.dtype) -> torch.Tensor | None:
    """A (k, out, in) tensor for ``mod``'s per-micro-batch weights, kept in the optimizer's
    cache between steps while all of them stay under ``KEEP_MB`` (None above it: allocated per
    step). Writing a fresh tensor of a few MB costs more than the batched matmul that fills it
    (the allocator returns it to the system and every page faults in again)."""
    cache = ctx.cache.setdefault("_fused_buffers", {})
    key = (id(mod), shape, dtype)
    buf = cache.get(key)
    if buf is not None and buf.device == mod.weight.device:
        return buf
    size = torch.Size(shape).numel() * dtype.itemsize
    if sum(b.numel() * b.element_size() for b in cache.values()) + size > KEEP_MB * 2**20:
        return None
    cache[key] = buf = torch.empty(shape, dtype=dtype, device=mod.weight.device)
    return buf


def _adaptive_shifts(ctx: PathContext, layers, directions, rhos, k: int, eta: float) -> dict:
    """ASAM's e_j = rho T^2 g_j / ||T g_j||, T = |w| + eta, per layer as (E_j, e_b).

    The elementwise T breaks the low rank of g_j, so each micro-batch's weight gradient is
    formed, G_j = delta_j^T a_j (one batched matmul: the flops of one full-batch weight
    gradient, into a buffer kept between steps: ``_weight_buffer``), and so is its
    perturbation E_j.
    """
    sq, parts = [], []
    for (mod, w, b), (a, d) in zip(layers, directions):
        tg_w = tg_b = t_w = t_b = None
        if w is not None:
            t_w = mod.weight.detach().abs().add(eta)
            buf = _weight_buffer(ctx, mod, (k, *t_w.shape), a.dtype)
            tg_w = torch.bmm(d.mT, a, out=buf).mul_(t_w)  # T G_j, (k, out, in)
            sq.append(torch.linalg.vector_norm(tg_w, dim=(1, 2)).square())
        if b is not None:
            t_b = mod.bias.detach().abs().add(eta)
            tg_b = d.sum(1).mul_(t_b)  # T s_j, (k, out)
            sq.append(torch.linalg.vector_norm(tg_b, dim=1).square())
        parts.append((tg_w, t_w, tg_b, t_b))
    c = _rho_coefficients(sq, k)
    shift = {}
    for (mod, w, b), (tg_w, t_w, tg_b, t_b) in zip(layers, parts):
        e_w = None if tg_w is None else tg_w.mul_(t_w).mul_(c(rhos[w]))  # E_j, (k, out, in)
        e_b = None if tg_b is None else tg_b.mul_(t_b).unsqueeze(1).mul_(c(rhos[b]))  # (k, 1, out)
        shift[mod] = (e_w, e_b)
    return shift


def _random_shifts(ctx: PathContext, layers, rhos, k: int) -> dict:
    """randsam's e_j = rho n_j / ||n_j||, n_j ~ N(0, I), per layer as (E_j, e_b): the
    noise drawn micro-batch by micro-batch in the optimizer's parameter order, as the loop does."""
    noise = random_direction(ctx.params, k, ctx.generator)
    sq = [torch.linalg.vector_norm(n.flatten(1), dim=1).square() for n in noise]
    c = _rho_coefficients(sq, k)
    shift = {}
    for mod, w, b in layers:
        dtype = torch.promote_types(mod.weight.dtype, torch.float32)
        e_w = None if w is None else noise[w].to(dtype).mul_(c(rhos[w]))  # (k, out, in)
        e_b = None if b is None else noise[b].to(dtype).unsqueeze(1).mul_(c(rhos[b]))
        shift[mod] = (e_w, e_b)
    return shift


def _correction(shift: tuple, x: torch.Tensor, k: int, m: int) -> torch.Tensor:
    """x_j E_j^T + e_b,j for every micro-batch j, (k, m, out), from SAM's low-rank factors
    (``_low_rank_shifts``): the forward at w + e_j minus the one at w. (ASAM's and randsam's
    full E_j run as ``_ShiftedLinear`` instead.)"""
    x = x.reshape(k, m, -1)
    a_t, d_w, e_b, fold = shift
    if x.dtype != a_t.dtype:
        x = x.to(a_t.dtype)
    if d_w is None:
        return e_b.expand(k, m, -1)
    if fold:  # bias folded in: (x_j a_j^T + 1) c_j delta_j = x_j E_j^T + e_b,j
        return torch.bmm(torch.bmm(x, a_t).add_(1.0), d_w)
    if e_b is None:
        return torch.bmm(torch.bmm(x, a_t), d_w)  # x_j E_j^T = (x_j a_j^T) c_j delta_j
    return torch.baddbmm(e_b, torch.bmm(x, a_t), d_w)


def _gsam_final(ctx, layers, directions, called, p_obj, k: int, m: int, scale: float):
    """GSAM's final gradient, mean_j of g_p,j - alpha (g_j - coef_j g_p,j), from low-rank factors.

    With g_p,j = delta'_j^T x_j (this pass's output gradients and inputs), coef_j =
    <g_j, g_p,j> / (||g_p,j||^2 + EPS) needs only m x m Gram matrices (bias folded in as a
    constant input 1), and the mean is two full-batch matmuls with rows weighted per micro-batch:
    sum_j ((1 + alpha coef_j) / k) delta'_j^T x_j - (alpha / k) sum_j delta_j^T a_j.
    """
    ctx = as_context(ctx)
    alpha = ctx.variant_kwargs["alpha"]
    p_zs = [called[mod][1] for mod, _, _ in layers]
    p_deltas = torch.autograd.grad(p_obj * scale if scale != 1.0 else p_obj, p_zs,
                                   allow_unused=True)
    with torch.no_grad():
        dots, sq, factors = [], [], []
        for (mod, w, b), (a, d), p_z, p_d in zip(layers, directions, p_zs, p_deltas):
            x = called[mod][0]
            p_d = torch.zeros_like(p_z) if p_d is None else p_d
            p_d = (p_d if p_d.dtype == a.dtype else p_d.to(a.dtype)).reshape(k, m, -1)
            if scale != 1.0:
                p_d = p_d / scale
            x = (x if x.dtype == a.dtype else x.to(a.dtype)).reshape(k, m, -1)
            if w is not None:  # <G_j, G'_j> = sum((a_j x_j^T) * (delta_j delta'_j^T))
                cross, gram = torch.bmm(a, x.mT), torch.bmm(x, x.mT)
                if b is not None:
                    cross.add_(1.0)
                    gram.add_(1.0)
            else:  # bias only
                cross = gram = torch.ones(k, m, m, dtype=a.dtype, device=a.device)
            dots.append((cross * torch.bmm(d, p_d.mT)).sum((1, 2)))
            sq.append((gram * torch.bmm(p_d, p_d.mT)).sum((1, 2)))
            factors.append((a, d, x, p_d))
        coef = torch.stack(dots).sum(0) / (torch.stack(sq).sum(0) + EPS)  # (k,)
        row = ((1.0 + alpha * coef) / k).view(k, 1, 1)
        grads: dict[int, torch.Tensor] = {}
        for (_, w, b), (a, d, x, p_d) in zip(layers, factors):
            p_dw = (p_d * row).flatten(0, 1)  # (B, out)
            d_flat = d.flatten(0, 1)
            if w is not None:
                g_w = p_dw.mT @ x.flatten(0, 1)
                grads[w] = g_w.sub_(d_flat.mT @ a.flatten(0, 1), alpha=alpha / k)
            if b is not None:
                grads[b] = p_dw.sum(0).sub_(d_flat.sum(0), alpha=alpha / k)
        params = ctx.params
        return [grads[i].to(p.dtype) if i in grads else torch.zeros_like(p)
                for i, p in enumerate(params)]


def _check_output(out: torch.Tensor, batch: int) -> None:
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != batch:
        raise RuntimeError(
            f"fused m-sharpness: the model's output does not lead with the batch of {batch}."
        )
