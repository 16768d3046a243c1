"""The training loop: SAM-family optimizer, lr schedule, evaluation, forgetting metrics.

It knows nothing about the search: the search layer adapts it through callbacks.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samtune.optim import SAMConfig, build_optimizer
from samtune.schedules import lr_factor
from samtune.train._aggregator import EpochAggregator
from samtune.train._callbacks import Callback
from samtune.train._config import TrainConfig
from samtune.train.metrics import ForgettingTracker


@dataclass
class TrainResult:
    """What a training run produced."""

    history: list[dict[str, float]]  # one record per epoch (see ``train``)
    diverged: bool = False  # the loss became NaN or inf
    reason: str | None = None  # why training stopped early, if it did
    epochs_trained: int = 0
    steps: int = 0
    perturbed_steps: int = 0  # steps that took the perturbed pass (a perturb schedule skips some)
    step_time: float = float("nan")  # seconds per optimizer step (``typical_step_time``)
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}

    @property
    def val_acc(self) -> float:
        return float(self.final.get("val_acc", float("nan")))

    @property
    def val_metric(self) -> float:
        """The last epoch's ``val_metric`` (``val_acc`` unless ``train`` was given a metric)."""
        return float(self.final.get("val_metric", float("nan")))


def typical_step_time(times: list[float], perturbed: list[bool]) -> float:
    """Seconds per step: the median step, or, when only some steps perturbed (a perturb
    schedule), the median of each kind weighted by its share of the steps, so that a schedule
    perturbing a third of its steps costs a third of the way from the base step to SAM's (one
    median would be the base step's).

    >>> typical_step_time([1.0, 1.0, 9.0, 3.0], [False, False, False, True])
    1.5
    """
    if not times:
        return float("nan")
    slow = [t for t, p in zip(times, perturbed) if p]
    fast = [t for t, p in zip(times, perturbed) if not p]
    if not slow or not fast:
        return float(np.median(times))
    share = len(slow) / len(times)
    return float(share * np.median(slow) + (1 - share) * np.median(fast))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
    bf16: bool = False,
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on (x, y), in eval mode."""
    pred, total_loss = _predict(model, x, y, batch_size=batch_size, bf16=bf16)
    return _accuracy(pred, y), total_loss / max(1, len(x))


def correct_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
    bf16: bool = False,
) -> torch.Tensor:
    """Which examples of (x, y) ``model`` classifies correctly in eval mode (bool, on the CPU)."""
    return predict_classes(model, x, y, batch_size=batch_size, bf16=bf16) == y.cpu()


def predict_classes(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
    bf16: bool = False,
) -> torch.Tensor:
    """The class ``model`` predicts (argmax) for each example of x, in eval mode (int64, on
    the CPU); ``y`` only feeds the loss the pass computes on the way."""
    return _predict(model, x, y, batch_size=batch_size, bf16=bf16)[0]


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return (pred == y.cpu()).sum().item() / max(1, len(pred))


def _predict(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, bf16: bool
) -> tuple[torch.Tensor, float]:
    """Per-example predicted class and the summed cross-entropy, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pred, total_loss = [], 0.0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            xb, yb = x[lo:lo + batch_size].to(device), y[lo:lo + batch_size].to(device)
            with autocast:
                out = model(xb)
            total_loss += F.cross_entropy(out.float(), yb, reduction="sum").item()
            pred.append(out.argmax(-1).cpu())
    model.train(was_training)
    return (torch.cat(pred) if pred else torch.zeros(0, dtype=torch.int64)), total_loss


def train(
    model: nn.Module,
    data: Any,
    sam_config: SAMConfig,
    config: TrainConfig | None = None,
    callbacks: list[Callback] | None = None,
    val_metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` (a ``samtune.data.Dataset``) with the SAM-family optimizer.

    Each epoch's history record holds: epoch, lr, rho, train_loss, train_acc, the forgetting
    metrics of the perturbed pass (flip_rate, loss_gap, p_drop, bias_perturbed; absent for the
    sgd baseline), bias_clean, forgetting_rate (example forgetting over the epoch), val_acc,
    val_loss, val_metric, step_time and epoch_time (seconds). ``val_metric`` is
    ``val_metric(y_val, predicted classes)`` (CPU tensors), or ``val_acc`` when none is given.
    """
    config = config or TrainConfig()
    callbacks = callbacks or []
    device = resolve_device(config.device)
    model.to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    n_train = len(x_train)
    batch = config.resolve_batch_size(n_train, sam_config.m if sam_config.perturbs else None)
    steps_per_epoch = n_train // batch
    total_steps = steps_per_epoch * config.epochs
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total_steps // 10)
    gen = torch.Generator().manual_seed(config.seed)
    optimizer = build_optimizer(
        model, sam_config, total_steps=total_steps,
        generator=torch.Generator(device=device).manual_seed(config.seed + 1),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps=total_steps, warmup_steps=warmup)
    )
    augment = data.augment if config.augment is None else config.augment
    autocast_dtype = torch.bfloat16 if config.bf16 else None
    tracker = ForgettingTracker(n_train)
    info = {"steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
            "batch_size": batch, "device": str(device)}
    for cb in callbacks:
        cb.on_train_begin(info)
    # Per-step metrics are computed only for callbacks that read them; otherwise the
    # aggregator computes them in batches of steps (see EpochAggregator.add_step).
    step_hooks = [cb for cb in callbacks if type(cb).on_step_end is not Callback.on_step_end]

    result = TrainResult(history=[], model=model)
    step_times: list[float] = []
    perturbed: list[bool] = []  # per step: whether it took the perturbed pass
    model.train()
    for epoch in range(1, config.epochs + 1):
        t_epoch = time.perf_counter()
        agg = EpochAggregator(tracker)
        order = torch.randperm(n_train, generator=gen).to(device)
        lr, rho = optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["rho"]
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            xb, yb = x_train[idx], y_train[idx]
            if augment:
                xb = data.augment_batch(xb, generator=gen)
            t0 = time.perf_counter()
            out = optimizer.train_step(model, xb, yb, autocast_dtype=autocast_dtype)
            scheduler.step()
            loss = out.loss.item()  # the step's one host sync: divergence check, honest timing
            step_times.append(time.perf_counter() - t0)
            perturbed.append(out.perturbed_outputs is not None)
            result.steps += 1
            result.perturbed_steps += perturbed[-1]
            if not math.isfinite(loss):
                result.diverged = True
                result.reason = f"training loss became {loss} at epoch {epoch}, step {s + 1}"
                break
            agg.add_step(
                out.outputs, yb, out.perturbed_outputs,
                clean_loss=out.loss, perturbed_loss=out.perturbed_loss, indices=idx,
            )
            if step_hooks:
                metrics = agg.flush()[-1]
                for cb in step_hooks:
                    cb.on_step_end(result.steps, metrics)
        if result.diverged:
            break
        val_pred, val_loss_sum = _predict(
            model, data.x_val, data.y_val, batch_size=config.eval_batch_size, bf16=config.bf16
        )
        val_acc, val_loss = _accuracy(val_pred, data.y_val), val_loss_sum / max(1, len(data.x_val))
        record = {"epoch": epoch, "lr": float(lr), "rho": float(rho) if sam_config.perturbs else 0.0}
        record.update(agg.result())  # flushes the last steps into the tracker too
        record["forgetting_rate"] = tracker.epoch_rate()
        tracker.end_epoch()
        record.update(val_acc=val_acc, val_loss=val_loss,
                      val_metric=(val_acc if val_metric is None
                                  else float(val_metric(data.y_val.cpu(), val_pred))),
                      step_time=typical_step_time(step_times[-steps_per_epoch:],
                                                  perturbed[-steps_per_epoch:]),
                      epoch_time=time.perf_counter() - t_epoch)
        result.history.append(record)
        result.epochs_trained = epoch
        if not math.isfinite(val_loss):
            result.diverged = True
            result.reason = f"validation loss became {val_loss} at epoch {epoch}"
            break
        for cb in callbacks:
            cb.on_epoch_end(epoch, record)
    result.step_time = typical_step_time(step_times, perturbed)
    for cb in callbacks:
        cb.on_train_end(result)
    return result
