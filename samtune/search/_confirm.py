"""Confirmation: retrain the best configurations with several seeds, judge on the test split."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from samtune.optim import SAMConfig
from samtune.search._objective import run_config
from samtune.search._progress import EpochProgress
from samtune.train import TrainConfig, correct_examples

CONFIRM_SEED_OFFSET = 100_000  # confirmation seeds never coincide with search-trial seeds
FALLBACK = "untuned fallback baseline"  # how a baseline no trial tuned is described


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def pick_candidates(
    study: optuna.Study, top_k: int, base_fallback: dict[str, Any]
) -> list[tuple[SAMConfig, FrozenTrial | None]]:
    """The top-k distinct completed SAM-family configurations, plus the best baseline trial
    (a baseline never takes one of the k places).

    With no completed baseline trial, the baseline is the best trial's base optimizer alone:
    an untuned fallback (its trial is None; ``confirm`` describes it as such).
    """
    done = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
         if "config" in t.user_attrs),
        key=lambda t: t.value, reverse=True,
    )
    picked: list[tuple[SAMConfig, FrozenTrial | None]] = []
    seen: set[str] = set()
    for t in done:
        k = _key(t.user_attrs["config"])
        if t.user_attrs["config"]["variant"] == "sgd":
            continue
        if k not in seen and len(picked) < top_k:
            seen.add(k)
            picked.append((SAMConfig.from_dict(t.user_attrs["config"]), t))
    baseline = next((t for t in done if t.user_attrs["config"]["variant"] == "sgd"), None)
    if baseline is not None:
        if _key(baseline.user_attrs["config"]) not in seen:
            picked.append((SAMConfig.from_dict(baseline.user_attrs["config"]), baseline))
    else:
        best = SAMConfig.from_dict(done[0].user_attrs["config"]) if done else None
        base_kwargs = dict(best.base_kwargs) if best else dict(base_fallback)
        picked.append((SAMConfig(variant="sgd", rho=0.0, base=best.base if best else "sgd",
                                 base_kwargs=base_kwargs), None))
    return picked


def confirm(
    candidates: list[tuple[SAMConfig, FrozenTrial | None]],
    data: Any,
    train_config: TrainConfig,
    model_factory: Callable[[], nn.Module],
    *,
    seeds: int,
    seed: int = 0,
    on_run: Callable[[int, int, SAMConfig, int, float], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train each candidate with ``seeds`` seeds at full budget; test accuracy per seed."""
    out = []
    total = len(candidates) * seeds
    done = 0
    for config, trial in candidates:
        accs, correct, step_times, epochs = [], [], [], 0
        for s in range(seeds):
            run_seed = CONFIRM_SEED_OFFSET + seed * 1000 + s
            slow = [EpochProgress(say, f"confirm {done + 1}/{total}", train_config.epochs)] if say else []
            result = run_config(config, data, train_config, model_factory, seed=run_seed, callbacks=slow)
            epochs += result.epochs_trained
            if result.diverged:
                acc = float("nan")
            else:
                correct.append(correct_examples(
                    result.model, data.x_test, data.y_test,
                    batch_size=train_config.eval_batch_size, bf16=train_config.bf16))
                acc = correct[-1].sum().item() / max(1, correct[-1].numel())
            accs.append(acc)
            step_times.append(result.step_time)
            done += 1
            if on_run:
                on_run(done, total, config, s, acc)
        finite = [a for a in accs if a == a]
        fallback = trial is None and config.variant == "sgd"
        out.append({
            "config": config.to_dict(),
            "description": f"{FALLBACK} {config.describe()}" if fallback else config.describe(),
            "tuned": not fallback,  # False: a baseline no search trial tuned
            "trial": trial.number if trial is not None else None,
            "val_accuracy": trial.value if trial is not None else None,
            "test_accuracy": {
                "mean": statistics.fmean(finite) if finite else float("nan"),
                "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
                "per_seed": accs,
            },
            "correct": correct,  # per finite seed: which test examples it got right
            "step_time": statistics.median(step_times),
            "epochs": epochs,
        })
    return out
