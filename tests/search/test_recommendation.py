"""The verdict: a SAM-family gain counts only above twice its paired standard error."""

from __future__ import annotations

import json
import math
import statistics
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from samtune.search._evidence import paired_gain
from samtune.search._recommendation import Recommendation, build_recommendation


def _candidate(variant: str, masks: list[torch.Tensor], step_time: float = 1.0) -> dict:
    accs = [m.sum().item() / m.numel() for m in masks]
    return {
        "config": {"variant": variant, "rho": 0.0 if variant == "sgd" else 0.05},
        "description": f"{variant} candidate", "trial": None, "val_accuracy": None,
        "test_accuracy": {"mean": statistics.fmean(accs) if accs else math.nan,
                          "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                          "per_seed": accs},
        "correct": masks, "step_time": step_time, "epochs": 3,
    }


def _recommend(confirmed: list[dict]) -> Recommendation:
    study = optuna.create_study(direction="maximize")
    dataset = SimpleNamespace(describe=lambda: {"classes": 10})
    train_config = SimpleNamespace(epochs=3, batch_size=64)
    return build_recommendation(study, confirmed, dataset, train_config, "cnn", "sqlite://", "x")


def _mask(n: int, wrong: list[int]) -> torch.Tensor:
    m = torch.ones(n, dtype=torch.bool)
    m[wrong] = False
    return m


def test_the_standard_error_matches_the_paired_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    a = [torch.rand(300, generator=gen) < 0.9 for _ in range(3)]
    b = [torch.rand(300, generator=gen) < 0.8 for _ in range(4)]
    ca, cb = _candidate("sam", a), _candidate("sgd", b)
    d = np.mean([m.numpy() for m in a], 0) - np.mean([m.numpy() for m in b], 0)
    acc_a = [m.float().mean().item() for m in a]
    acc_b = [m.float().mean().item() for m in b]
    got = paired_gain(ca, cb)
    assert got["n_test"] == 300 and got["seeds"] == [3, 4]
    assert got["gain"] == pytest.approx(np.mean(acc_a) - np.mean(acc_b))
    assert got["test_se"] == pytest.approx(np.std(d, ddof=1) / math.sqrt(300), rel=1e-6)
    # the seed term: each side's spread of accuracy less what its examples' flips alone give it
    # (the mean per-example variance over the seeds, over N), which var(d) / N already holds
    def level(masks):
        c = np.stack([m.numpy() for m in masks]).astype(float)
        accs = c.mean(1)
        return max(0.0, np.var(accs, ddof=1) - c.var(0, ddof=1).mean() / c.shape[1]) / len(masks)
    seed_var = level(a) + level(b)
    assert seed_var < np.var(acc_a, ddof=1) / 3 + np.var(acc_b, ddof=1) / 4  # no flip counted twice
    assert got["seed_se"] == pytest.approx(math.sqrt(seed_var), rel=1e-6)
    assert got["se"] == pytest.approx(math.sqrt(np.var(d, ddof=1) / 300 + seed_var), rel=1e-6)
    assert got["bound"] == pytest.approx(2 * got["se"])


def test_identical_seeds_do_not_make_a_one_example_gain_evidence() -> None:
    """Every seed of both scores the same (no seed spread); SAM gets one more of 540 right:
    the gain equals its own standard error, and no number of seeds could show it."""
    n = 540
    base = _candidate("sgd", [_mask(n, [1, 2, 3, 4, 5, 6, 7, 8])] * 3)
    sam = _candidate("sam", [_mask(n, [1, 2, 3, 4, 5, 6, 7])] * 3)
    rec = _recommend([base, sam])
    assert rec.verdict == "keep-baseline" and rec.gain == 0.0
    assert rec.evidence["seed_se"] == 0.0
    assert rec.evidence["gain"] == pytest.approx(1 / n)
    assert rec.evidence["se"] == pytest.approx(1 / n)  # sd of one 1 among 540 over sqrt(540)
    assert rec.evidence["bound"] == pytest.approx(2 / n)
    assert "not above the noise bound" in rec.summary


def test_a_consistent_gain_well_above_both_noises_is_used() -> None:
    n = 500
    base = _candidate("sgd", [_mask(n, list(range(40 + s, 100, 1))) for s in range(3)])
    sam = _candidate("sam", [_mask(n, list(range(80 + s, 100, 1))) for s in range(3)], 2.0)
    rec = _recommend([base, sam])
    assert rec.verdict == "use" and rec.config.variant == "sam"
    assert rec.gain == pytest.approx(sam["test_accuracy"]["mean"] - base["test_accuracy"]["mean"])
    assert rec.gain > rec.evidence["bound"] > 0
    assert rec.cost_multiplier == 2.0
    assert rec.summary.startswith("use sam candidate")


def test_a_gain_below_the_seed_spread_is_not_used() -> None:
    n = 1000
    base = _candidate("sgd", [_mask(n, list(range(0, k))) for k in (50, 50, 50)])
    sam = _candidate("sam", [_mask(n, list(range(0, k))) for k in (10, 40, 70)])
    rec = _recommend([base, sam])
    assert rec.evidence["gain"] == pytest.approx(0.01)
    # 0.99, 0.96, 0.93: a spread of 0.03, of which the 60 examples that flip explain 0.02 / 1000
    assert rec.evidence["seed_se"] == pytest.approx(math.sqrt((0.03**2 - 0.02 / n) / 3))
    assert rec.evidence["gain"] < rec.evidence["bound"]
    assert rec.verdict != "use"


def test_without_sam_candidates_the_baseline_is_kept_and_the_json_is_strict() -> None:
    rec = _recommend([_candidate("sgd", [_mask(50, [0])])])
    assert rec.verdict == "keep-baseline" and rec.evidence == {}
    assert "no SAM-family configuration was confirmed" in rec.summary
    sam = _candidate("sam", [])
    sam["test_accuracy"] = {"mean": float("nan"), "std": 0.0, "per_seed": [float("nan")]}
    rec = _recommend([_candidate("sgd", [_mask(50, [0])]), sam])
    assert rec.evidence["test_se"] is None  # every SAM seed diverged: nothing to pair
    json.dumps(rec.to_dict()["evidence"], allow_nan=False)
    assert Recommendation.from_dict(rec.to_dict()).evidence == rec.evidence


def test_a_recommendation_saved_before_evidence_existed_still_loads() -> None:
    d = Recommendation.example().to_dict()
    del d["evidence"]
    assert Recommendation.from_dict(d).evidence == {}
