"""benchmarks/decision_compare.py: intervals and paired comparisons of decision results."""

from __future__ import annotations

import json
import math

import pytest

from tests.benchmarks._quick import load

cmp = load("decision_compare")


def row(task: str, seed: int, *, regret: float, ok: bool = True, verdict: str = "use",
        claim: float = 0.0, gap: float = 0.0, compute: float = 50.0, cost=None) -> dict:
    return {"task": task, "seed": seed, "verdict": verdict, "verdict_correct": ok,
            "regret_pp": regret, "claimed_gain_error_pp": claim, "baseline_gap_pp": gap,
            "compute_runs": compute, "cost_over_cheapest": cost}


def control_rows() -> list[dict]:
    return [row(t, s, regret=r, ok=s != 0) for t in ("a", "b")
            for s, r in zip(range(3), (1.0, 2.0, 3.0))]


def test_a_uniform_improvement_has_a_point_interval_and_wins_every_resample():
    control = control_rows()
    change = [{**r, "regret_pp": r["regret_pp"] - 0.5} for r in control]
    d = cmp.paired_differences(cmp.pair_rows(control, change), draws=200)
    assert d["regret_pp"]["difference"] == pytest.approx(-0.5)
    assert d["regret_pp"]["low"] == pytest.approx(-0.5) and d["regret_pp"]["high"] == pytest.approx(-0.5)
    assert d["regret_pp"]["p_better"] == 1.0 and d["regret_pp"]["rows_moved"] == 6
    # measures no row changed: a zero difference, ties counted half
    assert d["verdict_accuracy"]["difference"] == 0.0 and d["verdict_accuracy"]["p_better"] == 0.5
    assert d["verdict_accuracy"]["rows_moved"] == 0


def test_one_verdict_turned_right_moves_accuracy_by_one_row_and_the_interval_holds_zero():
    control = control_rows()
    change = [dict(r) for r in control]
    change[0]["verdict_correct"] = True  # task a, seed 0
    d = cmp.paired_differences(cmp.pair_rows(control, change), draws=2000)["verdict_accuracy"]
    assert d["difference"] == pytest.approx(1 / 6)
    assert d["low"] == 0.0 < d["difference"] <= d["high"]  # a resample may miss the row
    assert 0.5 < d["p_better"] < 1.0 and d["rows_moved"] == 1


def test_pooled_summary_matches_the_plain_means_and_brackets_them():
    rows = control_rows()
    s = cmp.summary_intervals(rows, draws=500)
    assert s["regret_pp"]["value"] == pytest.approx(2.0)
    assert s["verdict_accuracy"]["value"] == pytest.approx(4 / 6)
    assert s["regret_pp"]["low"] < 2.0 < s["regret_pp"]["high"]
    assert s["regret_pp"]["low"] >= 1.0 and s["regret_pp"]["high"] <= 3.0
    assert s["inconclusive_share"]["value"] == 0.0
    assert math.isnan(s["mean_cost_over_cheapest"]["value"])  # no row has a cost


def test_resampling_stays_within_each_task():
    rng = __import__("random").Random(1)
    groups = cmp.strata([row("a", 0, regret=0.0), row("a", 1, regret=0.0), row("b", 0, regret=9.0)])
    for _ in range(50):
        draw = cmp.resample(groups, rng)
        assert [r["task"] for r in draw].count("b") == 1 and len(draw) == 3


def test_rows_given_twice_or_runs_that_share_nothing_are_errors(tmp_path, capsys):
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"runs": control_rows()}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"runs": [row("c", 0, regret=0.0)]}))
    assert cmp.main([f"{a},{a}"]) == 2
    assert "twice" in capsys.readouterr().err
    assert cmp.main(["--control", str(a), str(other)]) == 2
    assert "share no" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    for text in ("{}", '{"runs": [{"seed": 0}]}', "not json"):
        bad.write_text(text)
        assert cmp.main([str(bad)]) == 2
        assert "not a decision result file" in capsys.readouterr().err


def test_the_command_prints_every_measure(tmp_path, capsys):
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"runs": control_rows()}))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"runs": [{**r, "regret_pp": 0.0} for r in control_rows()]}))
    assert cmp.main(["--control", str(a), str(b), "--draws", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 6 and out["differences"]["regret_pp"]["difference"] == pytest.approx(-2.0)
    assert cmp.main([str(a), "--draws", "50"]) == 0
    text = capsys.readouterr().out
    assert all(label in text for _, label, _, _ in cmp.MEASURES)


def test_the_modules_examples_hold():
    import doctest

    assert doctest.testmod(cmp).failed == 0


def test_a_control_run_with_other_packages_is_named_on_stderr_and_the_same_ones_pass(tmp_path, capsys):
    env = {"python": "3.11", "packages": {"optuna": "5.0.0", "torch": "2.14.1"}, "commit": "abc"}
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"runs": control_rows(), "environment": env}))
    same = tmp_path / "same.json"
    same.write_text(json.dumps({"runs": control_rows(), "environment": {**env, "commit": "def"}}))
    other = tmp_path / "other.json"
    newer = {**env, "packages": {"optuna": "5.1.0", "torch": "2.14.1"}}
    other.write_text(json.dumps({"runs": control_rows(), "environment": newer}))
    assert cmp.main(["--control", str(a), str(same), "--draws", "20"]) == 0
    assert "warning" not in capsys.readouterr().err  # another commit is what is compared
    assert cmp.main(["--control", str(a), str(other), "--draws", "20"]) == 0
    err = capsys.readouterr().err
    assert "optuna 5.0.0 vs 5.1.0" in err and "torch" not in err


def test_the_benchmark_records_its_packages_and_commit():
    decision = load("decision")
    env = decision.environment()
    assert set(env["packages"]) == set(decision.PACKAGES)
    assert env["packages"]["optuna"] == __import__("optuna").__version__
    assert env["commit"] is None or len(env["commit"].split("+")[0]) == 40


def test_a_control_run_on_another_processor_is_named_on_stderr(tmp_path, capsys):
    env = {"packages": {"torch": "2.14.1"}, "cpu": {"cpu_family": "26", "torch_capability": "AVX512"}}
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"runs": control_rows(), "environment": env}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"runs": control_rows(), "environment": {
        **env, "cpu": {"cpu_family": "25", "torch_capability": "AVX2"}}}))
    assert cmp.main(["--control", str(a), str(other), "--draws", "20"]) == 0
    err = capsys.readouterr().err
    assert "other processors" in err and "cpu_family 26 vs 25" in err and "AVX512 vs AVX2" in err
    assert "other packages" not in err
    assert cmp.main(["--control", str(a), str(a), "--draws", "20"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_benchmark_records_the_processor_torch_dispatches_to():
    import torch

    cpu = load("decision").cpu()
    assert cpu["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "model_name" in cpu


def test_rows_that_took_the_same_search_path_are_counted():
    path = {"search_baseline": "sgd baseline (sgd, lr=0.1)", "n_trials": 24, "n_complete": 10,
            "n_pruned": 14, "n_complete_searched": 4}
    control = [{**r, **path} for r in control_rows()]
    change = [{**r, **path} for r in control_rows()]
    change[0]["search_baseline"] = "sgd baseline (sgd, lr=0.2)"
    change[1]["n_complete_searched"] = 5
    change[2]["regret_pp"] += 1.0  # another answer on the same path
    assert cmp.same_search(cmp.pair_rows(control, change)) == 4
