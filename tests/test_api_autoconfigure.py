"""autoconfigure reuses a stored study only when it matches the request; fresh=True searches anew."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from samtune import ConfigError, autoconfigure


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def _loader(batch_size: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)


@pytest.mark.slow
def test_reuse_needs_the_same_epochs_batch_size_and_budget(tmp_path):
    common = dict(storage=f"sqlite:///{tmp_path / 'auto.db'}", confirm_seeds=1, top_k=1, space="quick")
    first = autoconfigure(_net(), _loader(16), epochs=2, budget=2, **common)
    assert not first.reused
    same = autoconfigure(_net(), _loader(16), epochs=2, budget=2, **common)
    assert same.reused and same.recommendation.to_dict() == first.recommendation.to_dict()
    longer = autoconfigure(_net(), _loader(16), epochs=3, budget=2, **common)
    assert not longer.reused and "--epochs 2 vs 3" in longer.message
    assert longer.recommendation.train["epochs"] == 3
    wider = autoconfigure(_net(), _loader(32), epochs=2, budget=2, **common)
    assert not wider.reused and "batch size 16 vs 32" in wider.message
    assert wider.recommendation.train["batch_size"] == 32  # the DataLoader's batch size is used
    bigger = autoconfigure(_net(), _loader(16), epochs=2, budget=3, **common)
    assert not bigger.reused and "budget 2 vs 3 trial(s)" in bigger.message
    assert bigger.recommendation.study["n_trials"] >= 3
    limited = autoconfigure(_net(), _loader(16), epochs=2, budget=2, max_cost=1.5, **common)
    assert not limited.reused and "max_cost None vs 1.5" in limited.message
    assert limited.recommendation.max_cost == 1.5 and limited.recommendation.cost_multiplier <= 1.5


@pytest.mark.slow
def test_fresh_searches_anew_in_a_new_study(tmp_path):
    common = dict(storage=f"sqlite:///{tmp_path / 'auto.db'}", confirm_seeds=1, top_k=1,
                  space="quick", epochs=1, budget=2)
    first = autoconfigure(_net(), _loader(16), **common)
    again = autoconfigure(_net(), _loader(16), fresh=True, **common)
    assert not again.reused and "fresh=True" in again.message
    assert again.recommendation.study["name"] != first.recommendation.study["name"]
    with pytest.raises(ConfigError, match="fresh"):
        autoconfigure(_net(), _loader(16), fresh="yes", **common)


def test_trials_is_refused_with_the_name_autoconfigure_uses(tmp_path):
    with pytest.raises(ConfigError, match=r"budget=, not trials=; pass budget=20\."):
        autoconfigure(_net(), _loader(16), trials=20, storage=f"sqlite:///{tmp_path / 'a.db'}")
    assert not (tmp_path / "a.db").exists()  # refused before anything is written
