"""The training loop's bookkeeping with known answers: which examples each step sees, the lr
and rho it records, the step times trials are costed by, the validation loss, divergence.

From a mutation run of ``samtune/train/_loop.py`` (benchmarks/RESULTS.md): each test holds a
rule that a one-line change broke without the other loop tests noticing.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samtune import SAMConfig
from samtune.data import Dataset
from samtune.schedules import PerturbSchedule, lr_factor
from samtune.train import Callback, TrainConfig, seed_everything, train
from samtune.train._loop import evaluate, typical_step_time

N_TRAIN, N_VAL, BATCH = 96, 40, 32


def _data(seed: int = 0, augment: bool = False) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + 2 * N_VAL, 6, generator=g)
    y = (x[:, 1] + 0.5 * x[:, 2] > 0).long() + (x[:, 3] > 1).long()
    x[:N_TRAIN, 0] = torch.arange(N_TRAIN, dtype=torch.float32)  # each training row's id
    return Dataset(source="test", kind="tabular", x_train=x[:N_TRAIN], y_train=y[:N_TRAIN],
                   x_val=x[N_TRAIN:N_TRAIN + N_VAL], y_val=y[N_TRAIN:N_TRAIN + N_VAL],
                   x_test=x[N_TRAIN + N_VAL:], y_test=y[N_TRAIN + N_VAL:],
                   classes=["a", "b", "c"], input_shape=(6,), fingerprint="t", augment=augment)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def _train(variant="sgd", epochs=2, model=None, data=None, callbacks=None, **kw):
    cfg = {k: kw.pop(k) for k in list(kw) if k in ("seed", "augment", "eval_batch_size", "warmup_epochs")}
    sam = SAMConfig(variant=variant, base_kwargs={"lr": 0.05, "momentum": 0.9}, **kw)
    return train(model or _model(), data or _data(), sam,
                 TrainConfig(epochs=epochs, batch_size=BATCH, **cfg), callbacks)


def test_typical_step_time_weights_each_kind_of_step_by_its_share():
    assert typical_step_time([1.0, 2.0, 3.0, 10.0], [True, True, False, False]) == pytest.approx(4.0)
    assert typical_step_time([4.0, 1.0, 1.0], [True, False, False]) == pytest.approx(4 / 3 + 2 / 3)
    assert typical_step_time([5.0, 1.0, 2.0], [True, True, True]) == 2.0  # one kind: its median
    assert typical_step_time([5.0, 1.0, 2.0], [False, False, False]) == 2.0
    assert math.isnan(typical_step_time([], []))


def test_seed_everything_seeds_python_numpy_and_torch():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    seed_everything(2**33 + 5)  # numpy takes it modulo 2**32
    a = draws()
    seed_everything(2**33 + 5)
    assert draws() == a
    seed_everything(6)
    assert all(x != y for x, y in zip(draws(), a))


class _Seen(Callback):
    def __init__(self):
        self.begin, self.records, self.ended = None, [], None

    def on_train_begin(self, info):
        self.begin = info

    def on_epoch_end(self, epoch, record):
        self.records.append((epoch, record))

    def on_train_end(self, result):
        self.ended = result


def test_each_epoch_steps_through_every_example_once_in_batches_of_the_batch_size():
    seen: list[torch.Tensor] = []
    model = _model()
    model[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0][:, 0].clone())
                                       if mod.training else None)
    cb = _Seen()
    result = _train("sgd", epochs=2, model=model, callbacks=[cb])
    steps = N_TRAIN // BATCH
    assert cb.begin == {"steps_per_epoch": steps, "total_steps": 2 * steps, "batch_size": BATCH,
                        "device": "cpu"}
    assert len(seen) == 2 * steps and all(len(b) == BATCH for b in seen)
    for epoch in range(2):
        ids = torch.cat(seen[epoch * steps:(epoch + 1) * steps]).long()
        assert sorted(ids.tolist()) == list(range(N_TRAIN))
    assert not torch.equal(torch.cat(seen[:steps]), torch.cat(seen[steps:]))  # reshuffled
    assert [e for e, _ in cb.records] == [1, 2] and cb.ended is result
    assert [r for _, r in cb.records] == result.history


def test_the_shuffle_is_the_runs_own_seed_not_torchs_global_state():
    orders = []
    for global_seed in (1, 2):
        seen: list[torch.Tensor] = []
        model = _model()
        model[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0][:, 0].clone()))
        torch.manual_seed(global_seed)
        _train("sgd", epochs=1, model=model, seed=3)
        orders.append(torch.cat(seen))
    assert torch.equal(*orders)


@pytest.mark.parametrize("variant,perturb,share", [
    ("sgd", "always", 0.0), ("sam", "always", 1.0), ("sam", "stochastic", None)])
def test_perturbed_steps_count_the_steps_that_took_the_second_pass(variant, perturb, share):
    result = _train(variant, epochs=4, perturb=perturb)
    assert result.steps == 4 * (N_TRAIN // BATCH)
    if share is None:
        share = PerturbSchedule("stochastic").share(result.steps)
        assert 0 < share < 1
    assert result.perturbed_steps == round(share * result.steps)


def test_step_and_epoch_times_are_positive_and_nested():
    result = _train("sam", epochs=2)
    assert result.step_time > 0 and math.isfinite(result.step_time)
    for r in result.history:
        assert 0 < r["step_time"] * (N_TRAIN // BATCH) <= r["epoch_time"] < 60


def test_the_validation_loss_is_the_mean_cross_entropy_over_all_validation_batches():
    result = _train("sgd", epochs=2, eval_batch_size=16)  # 40 examples: batches of 16, 16, 8
    acc, loss = evaluate(result.model, _data().x_val, _data().y_val, batch_size=1000)
    with torch.no_grad():
        direct = F.cross_entropy(result.model(_data().x_val), _data().y_val).item()
    assert result.final["val_loss"] == pytest.approx(direct, rel=1e-5) == loss
    assert result.final["val_acc"] == acc


def test_the_record_holds_the_lr_and_rho_in_the_param_groups_as_the_epoch_starts():
    warm = _train("sam", epochs=20, rho=0.05, warmup_epochs=1.0)
    total, warmup = 20 * (N_TRAIN // BATCH), N_TRAIN // BATCH  # 1 epoch, under 10% of 60 steps
    for r in warm.history[:3]:
        step = (r["epoch"] - 1) * warmup
        assert r["lr"] == pytest.approx(0.05 * lr_factor(step, total_steps=total, warmup_steps=warmup))
        assert r["rho"] == 0.05
    assert _train("sgd", epochs=1).history[0]["rho"] == 0.0
    # cosine needs the run's total_steps (9, so progress t / 8); the param groups hold the rho
    # last written, the previous epoch's last step's (steps 2 and 5), the config's before any
    cosine = _train("sam", epochs=3, rho=0.1, schedule="cosine")
    assert [r["rho"] for r in cosine.history] == pytest.approx(
        [0.1, 0.1 * 0.5 * (1 + math.cos(math.pi * 2 / 8)), 0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 8))])


def test_a_loss_that_is_not_finite_stops_at_its_step_and_still_ends_the_run():
    data = _data()
    data.x_train[:, 1] = float("nan")
    cb = _Seen()
    result = _train("sgd", epochs=2, data=data, callbacks=[cb])
    assert result.diverged and result.steps == 1 and result.history == []
    assert result.reason == "training loss became nan at epoch 1, step 1"
    assert cb.ended is result and result.step_time > 0


def test_randsam_noise_follows_the_runs_seed():
    models = [_model(), _model()]
    torch.manual_seed(1)  # torch's global state differs between the runs; the run's seed does not
    a = _train("randsam", epochs=2, rho=0.5, seed=4, model=models[0])
    torch.manual_seed(2)
    b = _train("randsam", epochs=2, rho=0.5, seed=4, model=models[1])
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_train_config_augment_overrides_the_data_sets_default(monkeypatch):
    data = _data(augment=True)
    calls = []
    monkeypatch.setattr(data, "augment_batch", lambda x, generator=None: calls.append(1) or x)
    _train("sgd", epochs=1, data=data, augment=False)
    assert calls == []
    _train("sgd", epochs=1, data=data)
    assert len(calls) == N_TRAIN // BATCH
