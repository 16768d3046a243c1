"""The maths of one perturbation, on lists of tensors with a leading micro-batch axis.

Every list holds one tensor per perturbed parameter, shaped ``(k, *param.shape)``: k
micro-batches side by side. Norms are one global L2 norm over all parameters, per micro-batch.
``perturbation(..., batched=False)`` takes parameter-shaped tensors instead (one batch: plain
SAM's hot path, with no per-tensor views).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

EPS = 1e-12  # added to every norm (domain brief §2)


def _global_norm(tensors: Sequence[torch.Tensor], batched: bool = True) -> torch.Tensor:
    """Per-micro-batch global L2 norm, shape (k,) (a scalar unbatched): over all entries."""
    if not batched:
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))
    per_tensor = [torch.linalg.vector_norm(t.flatten(1), dim=1) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(per_tensor), dim=0)


def _per_k(scalars: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scalars.view(-1, *([1] * (like.dim() - 1)))


def _scale_by(tensors: Sequence[torch.Tensor], norm: torch.Tensor, rhos: Sequence[float],
              batched: bool = True) -> list[torch.Tensor]:
    """Each tensor times rho / norm (per micro-batch), in one foreach call."""
    coef: dict[float, torch.Tensor] = {}
    for rho in rhos:
        if rho not in coef:
            coef[rho] = rho / norm
    if not batched:
        if len(coef) == 1:
            return torch._foreach_mul(list(tensors), coef[rhos[0]])
        return torch._foreach_mul(list(tensors), [coef[r] for r in rhos])
    return torch._foreach_mul(list(tensors), [_per_k(coef[r], t) for t, r in zip(tensors, rhos)])


def perturbation(
    direction: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    rhos: Sequence[float],
    *,
    adaptive: bool = False,
    eta: float = 0.01,
    batched: bool = True,
) -> list[torch.Tensor]:
    """e = rho * d / ||d|| (SAM), or rho * T^2 d / ||T d|| with T = |w| + eta (ASAM).

    ``params`` are unbatched; ``rhos`` holds each parameter's rho (its param group's).
    """
    if adaptive:
        scales = [p.detach().abs().add(eta) for p in params]
        scaled = torch._foreach_mul(list(direction), scales)  # T d
        norm = _global_norm(scaled, batched).add(EPS)
        return _scale_by(torch._foreach_mul(scaled, scales), norm, rhos, batched)  # rho T^2 d / ||T d||
    return _scale_by(direction, _global_norm(direction, batched).add(EPS), rhos, batched)


def gsam_gradient(
    g: Sequence[torch.Tensor], g_p: Sequence[torch.Tensor], alpha: float
) -> list[torch.Tensor]:
    """GSAM: g_p - alpha * g_perp, with g_perp = g - (<g, g_p> / ||g_p||^2) g_p."""
    dot = torch.stack([(a * b).flatten(1).sum(1) for a, b in zip(g, g_p)]).sum(0)
    coef = dot / (_global_norm(g_p).square() + EPS)
    return [gp - alpha * (gi - _per_k(coef, gp) * gp) for gi, gp in zip(g, g_p)]


def random_direction(
    params: Sequence[torch.Tensor], k: int, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """n ~ N(0, I) per micro-batch, drawn micro-batch by micro-batch (same draws for any chunking)."""
    draws = [
        [torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype) for p in params]
        for _ in range(k)
    ]
    return [torch.stack([d[i] for d in draws]) for i in range(len(params))]


def obf_logit_grad(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    gamma: float,
    C: float | None = None,
    prob: str = "sigmoid",
) -> torch.Tensor:
    """Per-example gradient of the OBF surrogate with respect to the logits (Vani et al. 2024).

    (u - y) - alpha_i * (p - y), with u = 1/K, p = sigmoid(z) or softmax(z), lambda = 1/C and
    alpha_i = gamma * max(0, (1 - lambda / p_y) / (1 - lambda)), all without gradient.
    """
    z = logits.detach().float()
    K = z.shape[-1]
    y = (targets.unsqueeze(-1) == torch.arange(K, device=z.device)).to(z.dtype)  # vmap-safe one-hot
    p = torch.sigmoid(z) if prob == "sigmoid" else torch.softmax(z, dim=-1)
    lam = 1.0 / (C if C is not None else K)
    p_y = (p * y).sum(-1, keepdim=True).clamp_min(EPS)
    alpha = gamma * ((1.0 - lam / p_y) / (1.0 - lam)).clamp_min(0.0)
    return (1.0 / K - y) - alpha * (p - y)


def obf_surrogate(logits: torch.Tensor, targets: torch.Tensor, **obf: object) -> torch.Tensor:
    """A scalar whose gradient wrt the logits is the mean OBF logit gradient (value meaningless)."""
    grad = obf_logit_grad(logits, targets, **obf).to(logits.dtype)  # type: ignore[arg-type]
    return (logits * grad).sum() / logits.shape[0]
