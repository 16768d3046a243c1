"""Smoke test of benchmarks/pruning.py: the quick run finishes and writes its JSON and report.

No performance assertion here: the pruners' numbers belong to benchmarks/RESULTS.md, not to CI.
"""

from __future__ import annotations

import math

import pytest

from tests.benchmarks._quick import run_quick

PRUNERS = ("none", "forgetting", "median", "hyperband")




@pytest.fixture(scope="module")
def quick_result(tmp_path_factory) -> tuple[dict, dict, str]:
    out = tmp_path_factory.mktemp("bench") / "pruning.json"
    printed, written = run_quick("pruning", out)
    return printed, written, out.with_suffix(".md").read_text()


def test_prints_one_json_object_and_writes_the_same(quick_result):
    printed, written, _ = quick_result
    assert printed == written
    assert printed["quick"] is True
    assert "end_to_end" not in printed  # --quick skips it


def test_one_run_per_pruner_with_ratios_against_none(quick_result):
    result, _, _ = quick_result
    assert [r["pruner"] for r in result["runs"]] == list(PRUNERS)
    for run in result["runs"]:
        assert run["search_epochs"] >= 1
        assert 0.0 < run["epochs_ratio"] <= 1.0
        assert math.isfinite(run["regret_pp"])
    none = result["runs"][0]
    assert none["epochs_ratio"] == 1.0 and none["regret_pp"] == 0.0


def test_summary_and_targets(quick_result):
    result, _, _ = quick_result
    assert set(result["summary"]) == set(PRUNERS)
    assert result["summary"]["none"]["epochs_ratio"] == 1.0
    assert set(result["targets"]) == {
        "epochs_ratio_at_most_half", "regret_at_most_0.5pp", "dominates_median",
    }
    assert all(isinstance(v, bool) for v in result["targets"].values())


def test_markdown_report_holds_the_command_and_the_tables(quick_result):
    _, _, report = quick_result
    assert "python benchmarks/pruning.py --quick --json --out " in report
    assert "| forgetting | " in report and "Targets for `forgetting`:" in report
