"""The training loop and the forgetting metrics it records (no Optuna here)."""

from __future__ import annotations

from samtune.train._aggregator import EpochAggregator
from samtune.train._callbacks import Callback
from samtune.train._config import TrainConfig
from samtune.train._loop import (
    TrainResult,
    correct_examples,
    evaluate,
    predict_classes,
    resolve_device,
    seed_everything,
    train,
)
from samtune.train.metrics import ForgettingTracker, StepMetrics, step_metrics

__all__ = [
    "Callback",
    "EpochAggregator",
    "ForgettingTracker",
    "StepMetrics",
    "TrainConfig",
    "TrainResult",
    "correct_examples",
    "evaluate",
    "predict_classes",
    "resolve_device",
    "seed_everything",
    "step_metrics",
    "train",
]
