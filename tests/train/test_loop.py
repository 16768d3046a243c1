from __future__ import annotations

import math

import pytest
import torch

from samtune import SAMConfig
from samtune.data import load_data
from samtune.models import build_model
from samtune.train import Callback, TrainConfig, seed_everything, train

PERTURBED_KEYS = {"flip_rate", "loss_gap", "p_drop", "bias_perturbed"}


@pytest.fixture(scope="module")
def digits():
    return load_data("builtin:digits", seed=0)


@pytest.fixture(scope="module")
def wine():
    return load_data("builtin:wine", seed=0)


def _run(data, variant="sgd", epochs=2, seed=0, **sam):
    seed_everything(seed)
    model = build_model(None, data.input_shape, data.num_classes)
    return train(model, data, SAMConfig(variant=variant, **sam), TrainConfig(epochs=epochs, seed=seed))


def test_sgd_on_digits_reaches_90_percent_in_a_few_epochs(digits):
    result = _run(digits, "sgd", epochs=4)
    assert result.val_acc > 0.90
    assert result.epochs_trained == 4 and not result.diverged


def test_same_seed_same_history(wine):
    a = _run(wine, "sam", epochs=2, m=8)
    b = _run(wine, "sam", epochs=2, m=8)
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_time")} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    c = _run(wine, "sam", epochs=2, m=8, seed=1)
    assert strip(c.history) != strip(a.history)


def test_baseline_history_has_no_perturbed_metrics(wine):
    base = _run(wine, "sgd", epochs=1).history[0]
    sam = _run(wine, "sam", epochs=1).history[0]
    assert not PERTURBED_KEYS & set(base)
    assert PERTURBED_KEYS <= set(sam)
    for key in ("train_loss", "train_acc", "val_acc", "val_loss", "forgetting_rate", "bias_clean"):
        assert key in base and math.isfinite(base[key])
    assert 0.0 <= sam["flip_rate"] <= 1.0


def test_divergence_stops_with_a_reason(wine):
    result = _run(wine, "sgd", epochs=3, base_kwargs={"lr": 10.0, "momentum": 0.99})
    assert result.diverged
    assert "became" in result.reason and result.epochs_trained < 3


def test_callbacks_see_every_step_and_epoch(wine):
    seen = {"steps": 0, "epochs": [], "begin": None, "end": None}

    class Spy(Callback):
        def on_train_begin(self, info):
            seen["begin"] = info

        def on_step_end(self, step, metrics):
            seen["steps"] += 1

        def on_epoch_end(self, epoch, record):
            seen["epochs"].append(epoch)

        def on_train_end(self, result):
            seen["end"] = result

    seed_everything(0)
    model = build_model(None, wine.input_shape, wine.num_classes)
    result = train(model, wine, SAMConfig(variant="sgd"), TrainConfig(epochs=2), [Spy()])
    assert seen["epochs"] == [1, 2]
    assert seen["steps"] == result.steps == 2 * seen["begin"]["steps_per_epoch"]
    assert seen["end"] is result


def test_batch_size_respects_m_and_data_size():
    cfg = TrainConfig()
    assert cfg.resolve_batch_size(1257) == 64
    assert cfg.resolve_batch_size(100) == 16
    assert TrainConfig(batch_size=100).resolve_batch_size(1000, m=16) == 96
    # m at least the batch: the whole batch is one micro-batch (train_step's rule)
    assert TrainConfig(batch_size=32).resolve_batch_size(1000, m=64) == 32


def test_bf16_training_runs_on_cpu(wine):
    seed_everything(0)
    model = build_model(None, wine.input_shape, wine.num_classes)
    result = train(model, wine, SAMConfig(variant="sam"), TrainConfig(epochs=2, bf16=True))
    assert not result.diverged and result.val_acc > 0.5
    assert isinstance(next(model.parameters()).dtype, torch.dtype)


def test_a_step_callback_sees_each_step_and_leaves_the_history_unchanged(wine):
    seen = []

    class Steps(Callback):
        def on_step_end(self, step, metrics):
            seen.append((step, metrics.flip_rate))

    plain = _run(wine, "sam", epochs=2, rho=0.05)
    seed_everything(0)
    model = build_model(None, wine.input_shape, wine.num_classes)
    hooked = train(model, wine, SAMConfig(variant="sam", rho=0.05), TrainConfig(epochs=2, seed=0),
                   [Steps()])
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_time")} for r in h]  # noqa: E731
    assert strip(hooked.history) == strip(plain.history)
    assert [s for s, _ in seen] == list(range(1, hooked.steps + 1))
    assert all(0.0 <= f <= 1.0 for _, f in seen)
