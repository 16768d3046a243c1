"""``metric=`` through the Python front door: SamSearch and autoconfigure."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from samtune import ConfigError, SamSearch, autoconfigure


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)


def test_an_unknown_metric_fails_at_construction_and_before_autoconfigure_writes(tmp_path):
    with pytest.raises(ConfigError, match="unknown metric 'f2'"):
        SamSearch(metric="f2")
    db = tmp_path / "auto.db"
    with pytest.raises(ConfigError, match="unknown metric 'f2'"):
        autoconfigure(_net(), _loader(), epochs=1, budget=1, storage=f"sqlite:///{db}", metric="f2")
    assert not db.exists()


@pytest.mark.filterwarnings("ignore:the test split")
def test_sam_search_scores_on_the_metric(tmp_path):
    s = SamSearch(trials=2, epochs=1, confirm_seeds=1, max_confirm_seeds=1, top_k=1, space="quick",
                  storage=f"sqlite:///{tmp_path / 'x.db'}", study="x", out=str(tmp_path / "o"),
                  progress=False, metric="worst_class_recall").fit("builtin:wine")
    assert s.recommendation_.metric["name"] == "worst_class_recall"
    assert s.best_score_ == s.recommendation_.test_metric["mean"]
    assert s.best_score_ == pytest.approx(min(s.recommendation_.per_class_recall))
    assert s.study_.user_attrs["samtune"]["metric"] == "worst_class_recall"


@pytest.mark.slow
def test_autoconfigure_reuses_a_study_only_of_the_same_metric(tmp_path):
    common = dict(storage=f"sqlite:///{tmp_path / 'auto.db'}", confirm_seeds=1, top_k=1,
                  space="quick", epochs=1, budget=2)
    first = autoconfigure(_net(), _loader(), metric="macro_f1", **common)
    assert not first.reused and first.recommendation.metric["name"] == "macro_f1"
    assert first.recommendation.study["name"].endswith("-macro_f1")
    again = autoconfigure(_net(), _loader(), metric="macro_f1", **common)
    assert again.reused
    plain = autoconfigure(_net(), _loader(), **common)
    assert not plain.reused and "--metric macro_f1 vs accuracy" in plain.message
    assert plain.recommendation.metric["name"] == "accuracy"
