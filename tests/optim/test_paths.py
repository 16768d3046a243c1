"""Every registered m-sharpness path against the loop, for every variant it accepts.

Registering a path registers it here: each (path, variant, model) it supports must leave the
weights and BatchNorm statistics where the loop leaves them, over a few training steps.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from samtune import SAMConfig, build_optimizer, list_variants
from samtune.models import build_model
from samtune.optim._paths import candidates, get_path, list_paths
from tests.optim.conftest import mlp

PERTURBING = [v for v in list_variants() if v != "sgd"]
FAST = [p for p in list_paths() if p != "loop"]
KWARGS = {"gsam": {"alpha": 0.7}, "gsam-obf": {"alpha": 0.7, "gamma": 1.0},
          "asam-obf": {"gamma": 1.0}, "obf": {"gamma": 1.0}}
MODELS = {
    "mlp": lambda: mlp(),
    "mlp-bn": lambda: mlp(bn=True),
    "cnn": lambda: build_model("cnn", (1, 8, 8), 3),
}


def _batch(model_name: str, n: int = 32):
    g = torch.Generator().manual_seed(1)
    shape = (1, 8, 8) if model_name == "cnn" else (6,)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_registry_lists_the_paths_loop_last():
    assert list_paths() == ["fused", "grouped", "vmap", "loop"]
    for name in list_paths():
        path = get_path(name)
        assert path.name == name and callable(path.supported) and callable(path.run)


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("variant", PERTURBING)
@pytest.mark.parametrize("path", FAST)
def test_path_equals_the_loop(path, variant, model_name):
    torch.manual_seed(0)
    model = MODELS[model_name]()
    x, y = _batch(model_name)
    cfg = SAMConfig(variant=variant, rho=0.3, m=8, variant_kwargs=KWARGS.get(variant, {}),
                    base_kwargs={"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3})
    probe = build_optimizer(model, cfg)
    if path not in candidates(probe.path_context(), model, 4, x, False):
        pytest.skip(f"{path} does not take {variant} on {model_name}")
    twin = copy.deepcopy(model)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731 (randsam's noise, same draws)
    fast = build_optimizer(model, cfg, msharp=path, generator=gen())
    loop = build_optimizer(twin, cfg, msharp="loop", generator=gen())
    for _ in range(3):
        out = fast.train_step(model, x, y)
        ref = loop.train_step(twin, x, y)
    torch.testing.assert_close(out.perturbed_loss, ref.perturbed_loss, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)  # weights and BN stats


def test_the_loop_is_always_a_candidate_and_last():
    model = nn.Sequential(nn.Linear(6, 3))
    opt = build_optimizer(model, SAMConfig(variant="asam", m=8), msharp_memory_mb=1e-6)
    names = candidates(opt.path_context(), model, 4, torch.randn(32, 6), False)
    assert names == ["loop"]  # nothing else fits the memory bound
    opt = build_optimizer(model, SAMConfig(variant="randsam", m=8))
    assert candidates(opt.path_context(), model, 4, torch.randn(32, 6), False) == list_paths()
