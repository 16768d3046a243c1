"""``train(val_metric=...)``: the history's ``val_metric`` against scikit-learn on the final
model, and accuracy's history left exactly as it was without one."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import f1_score

from samtune import SAMConfig
from samtune.data import load_data
from samtune.metrics import Metric
from samtune.models import build_model
from samtune.train import TrainConfig, correct_examples, predict_classes, seed_everything, train


@pytest.fixture(scope="module")
def wine():
    return load_data("builtin:wine", seed=0)


def _run(data, **kwargs):
    seed_everything(0)
    model = build_model(None, data.input_shape, data.num_classes)
    return train(model, data, SAMConfig(variant="sam", m=8), TrainConfig(epochs=2, seed=0), **kwargs)


def _strip(history):
    return [{k: v for k, v in r.items() if not k.endswith("_time")} for r in history]


def test_val_metric_is_the_metric_of_the_final_model_on_the_val_split(wine):
    metric = Metric("macro_f1", wine.num_classes)
    result = _run(wine, val_metric=metric.utility)
    pred = predict_classes(result.model, wine.x_val, wine.y_val)
    want = f1_score(wine.y_val.numpy(), pred.numpy(), average="macro",
                    labels=range(wine.num_classes), zero_division=0)
    assert result.val_metric == pytest.approx(want, abs=1e-12)
    assert result.history[-1]["val_acc"] == (pred == wine.y_val).sum().item() / len(pred)
    assert torch.equal(correct_examples(result.model, wine.x_val, wine.y_val), pred == wine.y_val)


def test_without_a_metric_val_metric_is_val_acc_and_the_rest_is_unchanged(wine):
    plain = _run(wine)
    assert all(r["val_metric"] == r["val_acc"] for r in plain.history)
    scored = _run(wine, val_metric=Metric("balanced_accuracy", wine.num_classes).utility)
    drop = lambda h: [{k: v for k, v in r.items() if k != "val_metric"} for r in h]  # noqa: E731
    assert drop(_strip(plain.history)) == drop(_strip(scored.history))
