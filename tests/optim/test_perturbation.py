"""Known answers for the perturbation maths (domain brief §2)."""

from __future__ import annotations

import pytest
import torch

from samtune.optim._perturb import (
    gsam_gradient,
    obf_logit_grad,
    obf_surrogate,
    perturbation,
    random_direction,
)


def _norm(ts):
    return torch.sqrt(sum((t**2).sum() for t in ts))


def _params():
    g = torch.Generator().manual_seed(3)
    return [torch.randn(4, 3, generator=g), torch.randn(3, generator=g)]


def test_sam_perturbation_has_norm_rho_and_points_along_g():
    g = [t.unsqueeze(0) for t in _params()]
    e = perturbation(g, _params(), [0.3, 0.3])
    assert torch.allclose(_norm(e), torch.tensor(0.3), atol=1e-6)
    assert torch.allclose(e[0], 0.3 * g[0] / _norm(g), atol=1e-7)


def test_random_perturbation_has_norm_rho():
    n = random_direction(_params(), 1, torch.Generator().manual_seed(0))
    e = perturbation(n, _params(), [0.05, 0.05])
    assert torch.allclose(_norm(e), torch.tensor(0.05), atol=1e-7)


def test_asam_perturbation_matches_formula():
    w = _params()
    g = [t.flip(0) for t in w]
    eta, rho = 0.01, 1.5
    e = perturbation([t.unsqueeze(0) for t in g], w, [rho, rho], adaptive=True, eta=eta)
    T = [wi.abs() + eta for wi in w]
    norm = _norm([ti * gi for ti, gi in zip(T, g)])
    for ei, ti, gi in zip(e, T, g):
        assert torch.allclose(ei[0], rho * ti**2 * gi / norm, atol=1e-6)


def test_per_micro_batch_norms_are_separate():
    g = [torch.stack([t, 5 * t]) for t in _params()]
    e = perturbation(g, _params(), [0.1, 0.1])
    for j in range(2):
        assert torch.allclose(_norm([t[j] for t in e]), torch.tensor(0.1), atol=1e-6)
    assert torch.allclose(e[0][0], e[0][1], atol=1e-7)  # same direction, same e


def test_gsam_gradient_matches_formula_and_g_perp_is_orthogonal():
    g = [t.unsqueeze(0) for t in _params()]
    gp = [(t.flip(-1) + 0.5).unsqueeze(0) for t in _params()]
    alpha = 0.4
    final = gsam_gradient(g, gp, alpha)
    gf = torch.cat([t.flatten() for t in g])
    gpf = torch.cat([t.flatten() for t in gp])
    g_perp = gf - (gf @ gpf) / (gpf @ gpf) * gpf
    assert abs(float(g_perp @ gpf)) < 1e-5
    expected = gpf - alpha * g_perp
    assert torch.allclose(torch.cat([t.flatten() for t in final]), expected, atol=1e-6)


@pytest.mark.parametrize("prob", ["sigmoid", "softmax"])
@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_obf_logit_gradient_matches_formula(prob, gamma):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 4, generator=g) * 3
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    K, C = 4, 4
    p = torch.sigmoid(z) if prob == "sigmoid" else torch.softmax(z, -1)
    onehot = torch.eye(K)[y]
    lam = 1 / C
    p_y = p[torch.arange(6), y]
    alpha = gamma * torch.clamp((1 - lam / p_y) / (1 - lam), min=0)
    expected = (1 / K - onehot) - alpha[:, None] * (p - onehot)
    got = obf_logit_grad(z, y, gamma=gamma, C=C, prob=prob)
    assert torch.allclose(got, expected, atol=1e-6)
    # the surrogate back-propagates exactly that gradient (batch mean)
    zz = z.clone().requires_grad_(True)
    obf_surrogate(zz, y, gamma=gamma, C=C, prob=prob).backward()
    assert torch.allclose(zz.grad, expected / 6, atol=1e-6)
    if gamma == 0.0:
        assert torch.allclose(got, 1 / K - onehot)
