"""The registry of m-sharpness paths and when a batched path is offered (``_paths``): names are
unique, ``loop`` stays last whatever is registered after it, and a batched path needs room for
at least two micro-batches per call, counted with the activations of the batch at hand."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from samtune import SAMConfig, build_optimizer
from samtune.optim import _msharp, _msharp_grouped, _paths
from tests.optim.conftest import mlp

K = 4  # micro-batches of the batch of 32 below


@pytest.fixture()
def registry(monkeypatch):
    monkeypatch.setattr(_paths, "_REGISTRY", dict(_paths._REGISTRY))
    return _paths._REGISTRY


def _extra(name="extra"):
    return _paths.Path(name, lambda *a: True, lambda *a: None)


def test_a_path_registered_after_loop_comes_before_it_and_is_found_by_name(registry):
    extra = _paths.register_path(_extra())
    assert _paths.get_path("extra") is extra
    assert _paths.list_paths() == ["fused", "grouped", "vmap", "extra", "loop"]


def test_a_second_path_of_the_same_name_is_refused_and_the_first_kept(registry):
    first = _paths.register_path(_extra())
    with pytest.raises(ValueError, match="'extra' is already registered"):
        _paths.register_path(_extra())
    assert _paths.get_path("extra") is first


def _setup():
    model = mlp()
    opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.05, m=8))
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    return model, opt.path_context(), x


def _mb(nbytes: int) -> float:
    return nbytes / 2**20


def test_the_grouped_path_needs_room_for_two_micro_batches():
    model, ctx, x = _setup()
    per_micro = _msharp_grouped.STACKED_COPIES * sum(p.numel() * p.element_size() for p in ctx.params)
    two = dataclasses.replace(ctx, memory_mb=_mb(2 * per_micro))
    one = dataclasses.replace(ctx, memory_mb=_mb(2 * per_micro - 1))
    assert _paths._grouped_supported(two, model, K, x, False)
    assert not _paths._grouped_supported(one, model, K, x, False)


def test_the_vmap_path_counts_the_batchs_activations_and_needs_room_for_two():
    model, ctx, x = _setup()
    weights = 4 * sum(p.numel() * p.element_size() for p in ctx.params)
    acts = _msharp.saved_activation_bytes(ctx, model, x[: 32 // K])
    assert acts > 0
    two = dataclasses.replace(ctx, memory_mb=_mb(2 * (weights + acts)))
    short = dataclasses.replace(ctx, memory_mb=_mb(2 * (weights + acts) - 1))  # two without acts
    assert _paths._vmap_supported(two, model, K, x, False)
    assert not _paths._vmap_supported(short, model, K, x, False)
    assert "vmap" in _paths.candidates(two, model, K, x, False)
    assert "vmap" not in _paths.candidates(short, model, K, x, False)
