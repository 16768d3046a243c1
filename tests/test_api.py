"""The library API: search as a call, load_recommendation, autoconfigure, SamSearch."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import samtune
from samtune import NotFittedError, SamSearch, SamtuneError, autoconfigure, load_recommendation


class TinyNet(nn.Module):
    """A model class samtune has never seen."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, width), nn.Tanh())
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.fixture(scope="module")
def loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=g)
    y = ((x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, drop_last=True)


@pytest.fixture
def closure_space(tmp_path):
    path = tmp_path / "closure.yaml"
    path.write_text(yaml.safe_dump({"variants": ["sgd", "sam", "asam"], "m": [None],
                                    "lr": {"low": 0.02, "high": 0.2, "log": True},
                                    "rho": {"default": {"low": 0.01, "high": 0.2, "log": True},
                                            "asam": {"low": 0.1, "high": 2.0, "log": True}}}))
    return str(path)


def _tiny(tmp_path, **kw):
    return dict(budget=3, search_epochs=2, storage=f"sqlite:///{tmp_path / 'auto.db'}", confirm_seeds=1,
                top_k=1, **kw)


def test_search_is_callable_on_the_package(tmp_path):
    rec = samtune.search("builtin:wine", trials=2, epochs=1, confirm_seeds=1, top_k=1, space="quick",
                         storage=f"sqlite:///{tmp_path / 's.db'}", study="s", out=str(tmp_path / "o"),
                         progress=False)
    assert isinstance(rec, samtune.Recommendation) and isinstance(rec.config, samtune.SAMConfig)
    assert load_recommendation(tmp_path / "o").to_dict() == rec.to_dict()
    assert load_recommendation(tmp_path / "o" / "recommendation.yaml").to_dict() == rec.to_dict()
    assert load_recommendation("s", storage=f"sqlite:///{tmp_path / 's.db'}").to_dict() == rec.to_dict()
    with pytest.raises(SamtuneError, match="does not exist"):
        load_recommendation(tmp_path / "missing.json")


def test_autoconfigure_searches_on_the_users_model_and_loop(tmp_path, loader, closure_space):
    torch.manual_seed(0)
    model = TinyNet()
    before = copy.deepcopy(model.state_dict())
    auto = autoconfigure(model, loader, steps_per_epoch=len(loader), epochs=3,
                         **_tiny(tmp_path, space=closure_space))
    assert not auto.reused and auto.config == auto.recommendation.config
    for k, v in model.state_dict().items():  # the search trained copies, not the user's model
        assert torch.equal(v, before[k])
    assert auto.optimizer.config == auto.config
    # the user's own loop, with the closure step
    x_all, y_all = loader.dataset.tensors
    first = F.cross_entropy(model(x_all), y_all).item()
    for _ in range(3):
        for xb, yb in loader:
            def closure():
                auto.optimizer.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                return loss
            auto.optimizer.step(closure)
            auto.scheduler.step()
    assert F.cross_entropy(model(x_all), y_all).item() < first
    assert auto.optimizer.sam_step == 3 * len(loader)


@pytest.mark.slow
def test_autoconfigure_reuses_a_study_of_the_same_data_and_architecture(tmp_path, loader):
    torch.manual_seed(0)
    first = autoconfigure(TinyNet(), loader, epochs=2, **_tiny(tmp_path, space="quick"))
    torch.manual_seed(1)
    model = TinyNet()  # same architecture, other weights
    again = autoconfigure(model, loader, epochs=2, **_tiny(tmp_path, space="quick"))
    assert again.reused and "reused study" in again.message
    assert again.recommendation.to_dict() == first.recommendation.to_dict()
    # the high-level step works in the user's loop
    for xb, yb in loader:
        out = again.optimizer.train_step(model, xb, yb, F.cross_entropy)
        again.scheduler.step()
    assert out.outputs.shape == (16, 3)
    other = autoconfigure(TinyNet(width=48), loader, epochs=2, **_tiny(tmp_path, space="quick"))
    assert not other.reused


def test_autoconfigure_says_when_it_keeps_the_baseline(tmp_path, loader):
    space = tmp_path / "sgd.yaml"
    space.write_text(yaml.safe_dump({"variants": ["sgd"], "lr": {"low": 0.05, "high": 0.1}}))
    auto = autoconfigure(TinyNet(), loader, epochs=2, **_tiny(tmp_path, space=str(space)))
    assert auto.verdict == "keep-baseline" and auto.config.variant == "sgd"
    assert "did not help" in auto.message and "baseline" in auto.message
    assert auto.optimizer.spec.name == "sgd"


def test_sam_search_is_a_thin_fit_layer(tmp_path):
    s = SamSearch(trials=2, epochs=1, confirm_seeds=1, top_k=1, space="quick",
                  storage=f"sqlite:///{tmp_path / 'x.db'}", study="x", out=str(tmp_path / "o"),
                  progress=False)
    with pytest.raises(NotFittedError, match="fit"):
        s.best_config_
    assert s.fit("builtin:wine") is s
    assert isinstance(s.best_config_, samtune.SAMConfig)
    assert len(s.study_.trials) >= 2 and s.recommendation_.verdict in ("use", "keep-baseline")
    with pytest.raises(samtune.ConfigError, match="--trials"):
        SamSearch(trials=0)
