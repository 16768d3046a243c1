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

Only plain SAM and OBF directions (no ASAM scaling, no GSAM decomposition), and only models
built from Linear layers and parameter-free per-example modules: see :func:`supported`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from samtune.optim._perturb import EPS, obf_surrogate

if TYPE_CHECKING:
    from samtune.optim._sam import SAMOptimizer, StepOutput

# Parameter-free modules that treat every example on its own (exact types: a subclass may
# override forward). samtune's own ``mlp`` (samtune/models/mlp.py) is an nn.Sequential of
# Flatten, Linear and ReLU (BatchNorm1d only when asked for), so these cover it.
_PER_EXAMPLE = (
    nn.Sequential, nn.ModuleList, nn.Identity,
    nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus,
)

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


def _layers(opt: SAMOptimizer, model: nn.Module) -> list[Layer] | None:
    """The Linear layers holding the optimizer's parameters; None if the model is unsupported.

    Unsupported: a module outside the whitelist, a buffer that requires grad, an optimizer
    parameter outside the model's Linear layers, or one shared by two layers.
    """
    index = {id(p): i for i, p in enumerate(opt._params())}
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


def supported(opt: SAMOptimizer, model: nn.Module) -> bool:
    """Whether :func:`fused_pass` reproduces the loop for this optimizer and model."""
    return _direction_ok(opt) and _layers(opt, model) is not None


def _direction_ok(opt: SAMOptimizer) -> bool:
    spec = opt.spec  # plain SAM and OBF directions; ASAM and GSAM need the full G_j
    return spec.direction in ("loss", "obf") and not spec.adaptive and not spec.gsam


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
    opt: SAMOptimizer, model: nn.Module, inputs, targets, loss_fn, k: int, autocast, scale: float
) -> tuple[StepOutput, list[torch.Tensor]]:
    """Both m-sharpness passes in two full-batch forwards; same contract as ``vectorized_pass``.

    Raises RuntimeError when the model or a forward does not fit the assumptions (the caller
    falls back to another path).
    """
    from samtune.optim._sam import StepOutput

    cached = opt.__dict__.get("_fused_layers")
    if cached is None or cached[0] is not model:  # the static check, once per model
        cached = opt.__dict__["_fused_layers"] = (model, _layers(opt, model))
    layers = cached[1]
    if layers is None or not _direction_ok(opt):
        raise RuntimeError(
            "fused m-sharpness needs a sam or obf variant (no asam, no gsam) and a model of "
            "nn.Linear layers and per-example, parameter-free modules."
        )
    params, rhos = opt._params(), opt._rhos()
    batch = inputs.shape[0]
    m = batch // k

    # pass 1: clean forward, recording each layer's input a and output z
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(mod, args, out):
        seen[mod] = (_layer_input(mod, args, seen, batch).detach(), out)

    with _hooked(layers, record), torch.enable_grad(), autocast:
        out = model(inputs)
        _check_output(out, batch)
        counted = _counted(loss_fn, targets, k)
        losses = _micro_losses(loss_fn, out, targets, k, counted)
        if opt.spec.direction == "obf":  # per-example, so k x the batch mean = sum_j obj_j
            obj = obf_surrogate(out, targets, **opt._obf_kwargs()) * k
        else:
            obj = losses.sum()
    missing = [mod for mod, _, _ in layers if mod not in seen]
    if missing:
        raise RuntimeError(f"fused m-sharpness: {missing[0]} never ran in the forward pass.")
    zs = [seen[mod][1] for mod, _, _ in layers]
    deltas = torch.autograd.grad(obj * scale if scale != 1.0 else obj, zs, allow_unused=True)

    # micro-batch norms from Gram matrices, then each layer's low-rank perturbation
    with torch.no_grad():
        shift = _low_rank_shifts(layers, seen, zs, deltas, rhos, k, m, scale)

    # pass 2: the forward at w + e_j, for every j at once, through output corrections
    called: set[nn.Module] = set()

    def perturb(mod, args, out):
        x = _layer_input(mod, args, called, batch)
        called.add(mod)
        a_t, d_w, e_b, fold = shift[mod]
        with torch.autocast(out.device.type, enabled=False):  # low-rank maths in float32 or up
            x = x.reshape(k, m, -1)
            if x.dtype != a_t.dtype:
                x = x.to(a_t.dtype)
            if d_w is None:
                corr = e_b.expand(k, m, -1)
            elif fold:  # bias folded in: (x_j a_j^T + 1) c_j delta_j = x_j E_j^T + e_b,j
                corr = torch.bmm(torch.bmm(x, a_t).add_(1.0), d_w)
            elif e_b is None:
                corr = torch.bmm(torch.bmm(x, a_t), d_w)  # x_j E_j^T = (x_j a_j^T) c_j delta_j
            else:
                corr = torch.baddbmm(e_b, torch.bmm(x, a_t), d_w)
            corr = corr.reshape(out.shape)
            return out + (corr if corr.dtype == out.dtype else corr.to(out.dtype))

    with _hooked(layers, perturb), torch.enable_grad(), autocast:
        p_out = model(inputs)
        _check_output(p_out, batch)
        p_losses = _micro_losses(loss_fn, p_out, targets, k, counted)
        p_obj = p_losses.sum() / k
    if len(called) != len(layers):
        raise RuntimeError(
            "fused m-sharpness: the perturbed forward ran other layers than the clean one."
        )
    grads = torch.autograd.grad(p_obj * scale if scale != 1.0 else p_obj, params, allow_unused=True)
    final = [
        torch.zeros_like(p) if g is None else (g / scale if scale != 1.0 else g)
        for p, g in zip(params, grads)
    ]
    output = StepOutput(
        losses.mean().detach(), out.detach(), p_losses.mean().detach(), p_out.detach()
    )
    return output, final


def _low_rank_shifts(layers, seen, zs, deltas, rhos, k: int, m: int, scale: float) -> dict:
    """Per layer: (a^T, c delta, e_b, fold), the factors of every micro-batch's perturbation.

    ``fold``: weight and bias share a rho, so the bias is the weight of a constant input 1:
    its gradient is delta_j^T 1 and the Gram matrix of the inputs becomes a_j a_j^T + 1.
    """
    grams, parts = [], []
    for (mod, w, b), z, d in zip(layers, zs, deltas):
        dtype = torch.promote_types(mod.weight.dtype, torch.float32)
        a, d = seen[mod][0], torch.zeros_like(z) if d is None else d
        a = (a if a.dtype == dtype else a.to(dtype)).reshape(k, m, -1)
        d = (d if d.dtype == dtype else d.to(dtype)).reshape(k, m, -1)
        if scale != 1.0:
            d = d / scale
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
    inv_norm = 1.0 / (torch.stack(grams).sum(0).sqrt() + EPS)  # (k,)
    coef: dict[float, torch.Tensor] = {}

    def c(rho: float) -> torch.Tensor:  # rho / norm_j, per micro-batch, one per distinct rho
        if rho not in coef:
            coef[rho] = (rho * inv_norm).view(k, 1, 1)
        return coef[rho]

    shift = {}
    for (mod, w, b), (a_t, d, s, fold) in zip(layers, parts):
        d_w = d * c(rhos[w]) if w is not None else None
        e_b = None if s is None else s.unsqueeze(1) * c(rhos[b])
        shift[mod] = (a_t, d_w, e_b, fold)  # E_j = d_w,j^T a_j (+ the folded bias), e_b,j
    return shift


def _check_output(out: torch.Tensor, batch: int) -> None:
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != batch:
        raise RuntimeError(
            f"fused m-sharpness: the model's output does not lead with the batch of {batch}."
        )
