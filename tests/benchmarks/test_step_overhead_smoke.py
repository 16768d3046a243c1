"""Smoke test of benchmarks/step_overhead.py: the quick run finishes and its JSON is complete.

No performance assertion here: timings belong to benchmarks/RESULTS.md, not to CI.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.benchmarks._quick import run_quick

SPLITS = ("2", "4", "8", "16")




def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory) -> tuple[dict, dict]:
    return run_quick("step_overhead", tmp_path_factory.mktemp("bench") / "step_overhead.json")


def test_prints_one_json_object_and_writes_the_same(quick_result):
    printed, written = quick_result
    assert printed == written
    assert printed["quick"] is True


def test_top_level_ratios_are_positive_finite(quick_result):
    result, _ = quick_result
    assert _positive(result["sam_over_base"])
    assert _positive(result["sgd_variant_over_base"])
    for key in ("msharp_vectorized_over_loop", "msharp_vectorized_over_base"):
        assert set(result[key]) == set(SPLITS)
        assert all(_positive(result[key][s]) for s in SPLITS), result[key]


def test_per_model_detail_and_worst_case(quick_result):
    result, _ = quick_result
    assert set(result["models"]) == {"mlp", "cnn"}
    for detail in result["models"].values():
        assert _positive(detail["sam_over_base"])
        assert all(_positive(v) for v in detail["median_ms"].values())
        for key in ("msharp_vectorized_over_loop", "msharp_vectorized_over_base", "msharp_sam_over_loop"):
            assert all(_positive(detail[key][s]) for s in SPLITS)
    # top level = worst (max) over models
    assert result["sam_over_base"] == max(d["sam_over_base"] for d in result["models"].values())
    assert result["msharp_vectorized_over_base"]["8"] == max(
        d["msharp_vectorized_over_base"]["8"] for d in result["models"].values()
    )


def test_memory_section(quick_result):
    result, _ = quick_result
    mem = result["peak_memory_mb"]
    assert _positive(mem["process_peak_rss"])
    for model in ("mlp", "cnn"):
        assert all(_positive(v) for v in mem["step_peak_alloc"][model].values())
        assert all(_positive(mem["vmap_stacked_estimate"][model][s]) for s in SPLITS)
    assert set(mem["vmap_extra_over_loop"]) == set(SPLITS)
    assert isinstance(mem["method"], str)


def test_targets_are_reported(quick_result):
    result, _ = quick_result
    assert {t["target"] for t in result["targets"]} == {
        "sam_over_base",
        "msharp_vectorized_over_base[B/m=8]",
        "msharp_vectorized_over_loop[B/m=8]",
        "metrics_over_step",
        "loop_over_handwritten",
        "variant_m_over_base (worst cell)",
        "variant_m_over_m_none (worst cell)",
        "rho0_over_base (worst cell)",
        "stochastic_p025_over_base (worst cell)",
    }
    assert isinstance(result["all_targets_pass"], bool)
    assert not any(t["reliable"] for t in result["targets"])  # a quick run decides nothing


def test_training_loop_ratios_are_reported(quick_result):
    result, _ = quick_result
    training = result["training"]
    assert _positive(training["metrics_over_step"]) and _positive(training["loop_over_handwritten"])
    assert 0 < training["ops"]["metrics_per_step"] < 30  # batched: a few ops per step
    assert training["threads"] == 1


def test_variant_table(quick_result):
    from samtune.optim import list_variants

    result, _ = quick_result
    table = result["variant_m_over_base"]
    assert set(table) == {"mlp", "cnn"}
    for model, rows in table.items():
        assert set(rows) == set(list_variants())
        assert set(rows["sgd"]) == {"None"}
        for variant in list_variants()[1:]:
            assert set(rows[variant]) == {"None", "8"}  # a quick run: m in {None, 8}
            assert all(_positive(v) for v in rows[variant].values())
        assert set(result["variants"]["rho0_over_base"][model]) == {"sam/None", "sam/8"}
        assert _positive(result["variants"]["stochastic_p025_over_base"][model])


def test_randsam_floor_times_the_draws_against_a_base_step(capsys):
    from tests.benchmarks._quick import load

    assert load("randsam_floor").main(["--rounds", "1", "--steps", "1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["over_base"]["base"] == 1.0 and got["n_params"] == 78858  # 40-256-256-10
    assert {"draws 16", "one call 16"} <= set(got["median_s"])
    assert all(v > 0 for v in got["median_s"].values())
    assert load("randsam_floor").main(["--rounds", "0"]) == 2


def test_asam_buffers_times_kept_and_fresh_buffers_and_restores_the_bound(capsys):
    from samtune.optim import _msharp_linear
    from tests.benchmarks._quick import load

    shipped = _msharp_linear.KEEP_MB
    assert load("asam_buffers").main(["--rounds", "1", "--steps", "1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["x_base"]["base"] == 1.0 and _msharp_linear.KEEP_MB == shipped
    assert {"kept 8", "fresh 8"} <= set(got["x_base"]) and all(v > 0 for v in got["x_base"].values())
    assert set(got["kept_over_fresh"]) == {"32", "16", "8"}
    assert load("asam_buffers").main(["--rounds", "0"]) == 2


def test_asam_floor_times_its_parts_and_its_micro_batch_gradients_sum_to_the_batchs(capsys):
    import torch
    import torch.nn.functional as F

    from tests.benchmarks._quick import load

    floor = load("asam_floor")
    assert floor.main(["--rounds", "1", "--steps", "1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["over_base"]["base"] == 1.0 and set(got["asam_floor_over_base"]) == {"32", "16", "8"}
    assert all(v > 1.0 for v in got["asam_floor_over_base"].values())
    assert {"samtune asam m=8", "k-weight passes m=8", "full-batch passes"} <= set(got["median_s"])
    assert floor.main(["--rounds", "0"]) == 2
    # the parts it times are the real ones: sum_j delta_j^T a_j is the summed loss's gradient
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    linears = [model[0], model[2]]
    acts, deltas = floor.clean_pass(linears, x, y)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    for lin, a, d in zip(linears, acts, deltas):
        g_j = torch.bmm(d.reshape(4, 4, -1).mT, a.reshape(4, 4, -1))
        torch.testing.assert_close(g_j.sum(0), lin.weight.grad)


def test_fused_breakdown_times_the_fused_parts_and_leaves_them_unwrapped(capsys):
    import torch

    from samtune.optim import _msharp_linear
    from tests.benchmarks._quick import load

    before = (_msharp_linear._low_rank_shifts, torch.autograd.grad)
    breakdown = load("fused_breakdown")
    assert breakdown.main(["--steps", "2", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {"autograd.grad", "model forward", "_low_rank_shifts", "base update"} <= set(got["parts_s"])
    assert got["step_s"] > 0 and got["base_s"] > 0
    assert (_msharp_linear._low_rank_shifts, torch.autograd.grad) == before
    assert breakdown.main(["--steps", "0"]) == 2 and breakdown.main(["--variant", "sgd"]) == 2
    assert breakdown.main(["--variant", "nope"]) == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err
