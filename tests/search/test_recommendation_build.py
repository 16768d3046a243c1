"""``build_recommendation`` against answers worked out by hand: every field of the result, the
summary sentence of each verdict."""

from __future__ import annotations

import math
from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.trial import TrialState

import samtune
from samtune.errors import SamtuneError
from samtune.search._evidence import joint_z
from samtune.search._recommendation import Recommendation, build_recommendation

optuna.logging.set_verbosity(optuna.logging.WARNING)
N = 100  # test examples


def _mask(right: int) -> torch.Tensor:
    m = torch.zeros(N, dtype=torch.bool)
    m[:right] = True
    return m


def _cand(variant, rights, step_time, *, description=None, trial=None, val=None, tuned=None):
    accs = [r / N for r in rights]
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
    c = {"config": samtune.SAMConfig(variant=variant, rho=0.0 if variant == "sgd" else 0.1).to_dict(),
         "description": description or f"{variant} c", "trial": trial, "val_accuracy": val,
         "test_accuracy": {"mean": mean, "std": std, "per_seed": accs},
         "correct": [_mask(r) for r in rights], "step_time": step_time, "epochs": 4}
    if tuned is not None:
        c["tuned"] = tuned
    return c


def _study():
    """4 complete trials (one of them enqueued), 1 pruned, 1 failed; 13 epochs of history."""
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({})
    for state, epochs in ((TrialState.COMPLETE, 3), (TrialState.PRUNED, 1), (TrialState.COMPLETE, 3),
                          (TrialState.FAIL, 0), (TrialState.COMPLETE, 3), (TrialState.COMPLETE, 3)):
        t = study.ask()
        t.set_user_attr("history", [{}] * epochs)
        if state == TrialState.COMPLETE:
            study.tell(t, 0.5)
        else:
            study.tell(t, state=state)
    return study


def _build(confirmed, study=None, **kwargs):
    dataset = SimpleNamespace(describe=lambda: {"classes": ["a", "b"], "fingerprint": "f"})
    train = SimpleNamespace(epochs=4, batch_size=32)
    return build_recommendation(study or _study(), confirmed, dataset, train, "mlp", "sqlite:///s.db",
                                "data.csv", **kwargs)


def test_a_clear_gain_is_used_and_every_field_holds_its_known_value():
    base = _cand("sgd", [60, 60], 3.0, description="base", trial=0, val=0.6)
    sam = _cand("sam", [90, 90], 7.0, description="sam best", trial=2, val=0.9)
    asam = _cand("asam", [70, 70], 12.5, description="asam", trial=3, val=0.7)
    rec = _build([base, asam, sam])
    # paired difference: 30 examples gained, none lost -> mean 0.3, sd over 100 examples
    d = torch.tensor([1.0] * 30 + [0.0] * 70)
    se = d.std().item() / 10
    assert rec.verdict == "use" and rec.config.variant == "sam"
    assert rec.gain == pytest.approx(0.3) and rec.cost_multiplier == 2.333
    assert rec.test_accuracy == sam["test_accuracy"]
    assert rec.baseline["config"] == base["config"] and rec.baseline["tuned"] is True
    assert rec.baseline["test_accuracy"] == base["test_accuracy"]
    # two SAM-family candidates: the best of two correlated gains (nested examples) is judged
    # at their max-t z, below Bonferroni's 2.28
    z, how = joint_z([sam, asam], base)
    assert how == "max-t" and 2.0 <= z < 2.28
    assert rec.evidence == {"candidate": "sam best", "design": "test split", "gain": pytest.approx(0.3), "se": pytest.approx(se),
                            "bound": pytest.approx(z * se), "test_se": pytest.approx(se),
                            "seed_se": 0.0, "flip_se": 0.0, "n_test": N, "seeds": [2, 2], "z": z,
                            "z_method": "max-t", "z_candidates": z, "looks": 1, "df": None,
                            "look": 1, "first_look": 2, "look_factors": [1.0],
                            "max_seeds": 2, "chosen_on": "test",  # no val_scores: chosen on test
                            "stopped": "decided", "stability": {"n": 0, "neighbours": []}}
    assert rec.summary == (f"use sam best: +30.00 pp at 2.33x the baseline's cost; test accuracy "
                           f"0.9000 vs baseline 0.6000 (noise bound {100 * z * se:.2f} pp ({z:g} x SE {100 * se:.2f} pp: test examples "
                           f"{100 * se:.2f}, seeds 0.00; 2 vs 2 seeds; z for the best of several "
                           f"candidates ({z:g})))")
    assert [c["description"] for c in rec.candidates] == ["sam best", "asam", "base"]
    assert [c["cost_multiplier"] for c in rec.candidates] == [2.333, 4.167, 1.0]
    assert rec.candidates[0] == {"description": "sam best", "config": sam["config"], "trial": 2,
                                 "val_accuracy": 0.9, "test_accuracy": sam["test_accuracy"],
                                 "val_metric": 0.9, "test_metric": sam["test_accuracy"],
                                 "cost_multiplier": 2.333, "gain": pytest.approx(0.3),
                                 "bound": pytest.approx(z * se)}
    # asam (+10 pp at 4.17x) is beaten on both axes by sam; the baseline is the cheapest point
    assert [(f["description"], f["cost"]) for f in rec.frontier] == [("base", 1.0), ("sam best", 2.333)]
    assert rec.best == {} and rec.left_out == {} and rec.max_cost is None
    assert rec.train == {"epochs": 4, "batch_size": 32, "model": "mlp"}
    assert rec.dataset == {"classes": ["a", "b"], "fingerprint": "f", "path": "data.csv"}
    assert rec.study == {"name": rec.study["name"], "storage": "sqlite:///s.db", "n_trials": 6,
                         "n_complete": 4, "n_pruned": 1, "n_complete_searched": 3}
    assert rec.compute == {"search_epochs": 13, "confirmation_epochs": 12, "epochs": 25}
    assert rec.samtune_version == samtune.__version__


def test_a_worse_sam_keeps_the_baseline_and_says_by_how_much():
    base = _cand("sgd", [80, 82], 1.0, description="base")
    sam = _cand("sam", [70, 72], 2.0, description="sam")
    rec = _build([sam, base])
    assert (rec.verdict, rec.config.variant, rec.gain, rec.cost_multiplier) == ("keep-baseline", "sgd", 0.0, 1.0)
    assert rec.test_accuracy == base["test_accuracy"]
    assert rec.evidence["gain"] == pytest.approx(-0.1)
    # each side: accuracies 0.80 / 0.82 (variance 2e-4), of which the two examples that flip
    # give 0.5 * 2 / 100 / 100 = 1e-4 (already in the test term); the rest over 2 seeds, twice
    seed_se = 100 * (2 * (2e-4 - 1e-4) / 2) ** 0.5  # 1.00 pp
    assert rec.summary.startswith("SAM does not help here: keep the tuned baseline (base); the best "
                                  "SAM-family configuration (sam) scored 0.7100, 10.00 pp worse than "
                                  "the baseline (noise bound ")
    assert f"seeds {seed_se:.2f}; 2 vs 2 seeds" in rec.summary


def test_a_gain_within_the_noise_keeps_the_untuned_baseline_and_says_why():
    base = _cand("sgd", [80, 80], 1.0, description="fallback base", tuned=False)
    sam = _cand("sam", [81, 80], 2.0, description="sam")
    rec = _build([base, sam])
    # one example right in 1 of 2 seeds: test se = 0.5 * sd([1, 0 x 99]) / 10 = 0.5 pp; the
    # seeds' spread (81 vs 80) is that one example's flip, already in the test term: seeds 0;
    # se = 0.5 pp, the gain 0.5 pp: too small to settle
    assert rec.evidence["test_se"] == pytest.approx(0.005)
    assert rec.evidence["seed_se"] == pytest.approx(0.0, abs=1e-8)
    assert rec.verdict == "keep-baseline" and rec.baseline["tuned"] is False
    assert rec.summary == (
        "SAM does not help here: keep the baseline, an fallback base (no baseline trial completed, "
        "so its learning rate is the best trial's; rerun with more --trials to tune it); the best "
        "SAM-family configuration (sam) scored 0.8050, +0.50 pp, not above the noise bound 1.00 pp "
        "(2 x SE 0.50 pp: test examples 0.50, seeds 0.00; 2 vs 2 seeds), and too small to clear it "
        "with 2 seeds")


def test_a_gain_between_one_and_two_standard_errors_is_inconclusive_and_says_what_settles_it():
    from scipy.stats import t  # noqa: PLC0415

    base = _cand("sgd", [80, 80, 80], 1.0, description="base")
    sam = _cand("sam", [94, 82, 90], 2.0, description="sam")
    rec = _build([base, sam], max_seeds=3, stopped="max seeds")
    # test: d = 1 on 2 examples, 2/3 on 8, 1/3 on 4: sum d^2 = 6, mean 0.26 / 3;
    # seeds: sam's accuracy variance 0.0112 / 3 less its 12 examples' flips (variance 1/3
    # each: 12 / 3 / 100 / 100 = 4e-4), over 3 seeds
    gain, flips = 0.26 / 3, 4e-4
    test_var = (6 - 100 * gain**2) / 99 / 100
    seed_var = (0.0112 / 3 - flips) / 3
    # the seed term rests on 2 df: Welch-Satterthwaite df = (test + seed)^2 / (seed^2 / 2)
    df = (test_var + seed_var) ** 2 / (seed_var**2 / 2)
    ev = rec.evidence
    assert ev["se"] == pytest.approx((test_var + seed_var) ** 0.5)
    assert ev["df"] == pytest.approx(df) and ev["z"] == round(t.isf(0.02275, df), 2) == 2.77
    assert ev["se"] < ev["gain"] <= ev["bound"]
    assert rec.verdict == "inconclusive" and rec.config.variant == "sgd" and rec.gain == 0.0
    # more seeds shrink the seed term and the flips' share of the test term (flips / 3), and
    # grow the df (4.36 x (S - 1) / 2: 8.7 at 5 seeds, where t's quantile is 2.41): at 5 seeds
    # sqrt(test_var - flips / 3 + 3 * (seed_var + flips / 3) / 5) = 0.0334, and 2.41 x 0.0334
    # = 0.0805 < the gain 0.0867 (at 4 seeds: 2.53 x 0.0363 = 0.0918, above it)
    assert ev["seeds_to_settle"] == 5
    assert rec.summary.startswith("inconclusive: sam scored 0.8867 vs the baseline's 0.8000, +8.67 pp")
    assert rec.summary.endswith(f"keep the tuned baseline (base) for now; 3 seeds were the most "
                                f"allowed; if the measured gain is the true one, about "
                                f"{ev['seeds_to_settle']} seeds per side would settle it "
                                f"(--max-confirm-seeds {ev['seeds_to_settle']})")
    again = _build([base, sam], max_seeds=4, stopped="budget")  # the budget ended at 3 seeds
    # judged as the design it ended in, 2 looks (3 and 4 seeds). A fourth seed would shrink
    # the variance to (test_var - flips / 3 + 3 (seed_var + flips / 3) / 4) / (test_var +
    # seed_var) = 0.81 of today's: the first look holds 0.81 of the information, and its
    # O'Brien-Fleming bound (c / sqrt(0.81), c = 2.06 for two such looks at one look's 2.3%
    # tail) raises z by 1.145 to 3.18; the gain, 2.14 se, is then futile: even one se more
    # (3.14 se) stays under 3.18 se with no seed left
    fraction = (test_var - flips / 3 + 3 * (seed_var + flips / 3) / 4) / (test_var + seed_var)
    assert fraction == pytest.approx(0.810, abs=1e-3)
    assert again.evidence["look_factors"][0] == pytest.approx(2.06 / fraction**0.5 / 2, abs=0.005)
    assert again.evidence["looks"] == 2 and again.evidence["z"] == pytest.approx(
        ev["z"] * again.evidence["look_factors"][0], abs=0.01)
    assert again.verdict == "keep-baseline" and again.evidence["max_seeds"] == 3
    closer = _build([base, _cand("sam", [86, 81, 84], 2.0, description="sam")], max_seeds=4,
                    stopped="budget")  # 1.83 se against 2.45: open when the budget ended
    assert closer.verdict == "inconclusive" and "the time budget ended" in closer.summary
    assert "; z for look 1 of 2, t at " in closer.summary  # judged at its first look's bound
    assert Recommendation.from_dict(rec.to_dict()).verdict == "inconclusive"


def test_a_gain_against_the_untuned_baseline_names_it():
    base = _cand("sgd", [50, 50], 1.0, description="b", tuned=False)
    sam = _cand("sam", [90, 90], 3.0, description="s")
    rec = _build([base, sam])
    assert rec.verdict == "use" and "vs the untuned fallback baseline 0.5000" in rec.summary


def test_no_gain_at_all_is_not_called_worse():
    rec = _build([_cand("sgd", [70, 72], 1.0), _cand("sam", [70, 72], 2.0, description="s")])
    assert rec.evidence["gain"] == 0.0 and "scored 0.7100, +0.00 pp, not above" in rec.summary


def test_without_sam_candidates_or_baseline_step_time():
    base = _cand("sgd", [50], math.nan, description="b")  # no step timed
    rec = _build([base])
    assert rec.summary == ("SAM does not help here: keep the tuned baseline (b); no SAM-family "
                           "configuration was confirmed")
    assert rec.evidence == {} and math.isnan(rec.cost_multiplier)


def test_a_diverged_candidate_ranks_last():
    base = _cand("sgd", [50], 1.0, description="b")
    nan = _cand("sam", [60], 1.0, description="nan")
    nan["test_accuracy"]["mean"] = math.nan
    ok = _cand("asam", [10], 1.0, description="low")
    rec = _build([nan, base, ok])
    assert [c["description"] for c in rec.candidates] == ["b", "low", "nan"]


def test_a_recommendation_without_a_config_is_refused():
    d = Recommendation.example().to_dict()
    del d["config"]
    with pytest.raises(SamtuneError, match="not a samtune recommendation"):
        Recommendation.from_dict(d)
    with pytest.raises(SamtuneError, match="unknown verdict 'maybe'"):
        Recommendation.from_dict({**Recommendation.example().to_dict(), "verdict": "maybe"})


def test_the_example_is_a_use_verdict_with_its_evidence():
    rec = Recommendation.example()
    assert rec.to_dict() == Recommendation.from_dict(rec.to_dict()).to_dict()
    assert (rec.verdict, rec.config.variant, rec.gain, rec.cost_multiplier) == ("use", "sam", 0.01, 2.0)
    assert rec.test_accuracy == {"mean": 0.95, "std": 0.004, "per_seed": [0.95, 0.946, 0.954]}
    assert rec.baseline == {"config": samtune.SAMConfig(variant="sgd").to_dict(),
                            "test_accuracy": {"mean": 0.94, "std": 0.003,
                                              "per_seed": [0.94, 0.937, 0.943]}}


def test_save_and_load_round_trip_and_their_errors(tmp_path):
    rec = _build([_cand("sgd", [60], 1.0), _cand("sam", [90], 2.0)])
    json_path, yaml_path = rec.save(tmp_path / "out")
    assert (json_path.name, yaml_path.name) == ("recommendation.json", "recommendation.yaml")
    for path in (json_path, yaml_path, tmp_path / "out"):
        assert Recommendation.load(path).to_dict() == rec.to_dict()
    assert json_path.read_text().endswith("}\n") and '\n  "verdict": "use",' in json_path.read_text()
    assert yaml_path.read_text().startswith("verdict: use\n")  # key order kept
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [json_path.name, yaml_path.name]
    with pytest.raises(SamtuneError, match=r"^cannot read recommendation '.*nope.json' \(No such file"):
        Recommendation.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SamtuneError, match=r"^'.*bad.json' is not valid JSON/YAML \(Expecting"):
        Recommendation.load(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SamtuneError, match=r"^'.*list.yaml' does not hold a recommendation mapping\.$"):
        Recommendation.load(tmp_path / "list.yaml")
    again = rec.save(tmp_path / "out")  # an existing folder is fine
    assert again == (json_path, yaml_path)
    deep = rec.save(tmp_path / "a" / "b" / "c")  # missing parents are made
    assert deep[0].exists() and deep[1].exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(SamtuneError, match=r"^cannot create output directory '.*file.sub' \(.*\); pass --out"):
        rec.save(tmp_path / "file" / "sub")


def test_baseline_tuning_reports_the_staged_search_record():
    from samtune.search._stages import STAGE_ATTR

    study = _study()
    assert _build([_cand("sgd", [60], 1.0)], study).baseline["tuning"] == {}
    study.set_user_attr(STAGE_ATTR, {"baseline_trials": 4, "baseline_completed": 3,
                                     "lr_tried": [0.01, 0.03, 0.1], "baseline_lr": 0.1,
                                     "lr_on_edge": True, "other": 1})
    assert _build([_cand("sgd", [60], 1.0)], study).baseline["tuning"] == {
        "trials": 4, "completed": 3, "lr_tried": [0.01, 0.03, 0.1], "lr": 0.1, "lr_on_edge": True}
    study.set_user_attr(STAGE_ATTR, {**study.user_attrs[STAGE_ATTR], "family_lr": 0.07})
    assert _build([_cand("sgd", [60], 1.0)], study).baseline["tuning"]["family_lr"] == 0.07


def _neighbour_study(entries):
    """entries: (variant, rho, m, val)."""
    study = optuna.create_study(direction="maximize")
    for variant, rho, m, val in entries:
        t = study.ask()
        t.set_user_attr("config", {"variant": variant, "rho": rho, "m": m})
        study.tell(t, val)
    return study


def test_stability_neighbours_at_the_ends_of_their_windows():
    from samtune.search._recommendation import stability

    best = {"variant": "sam", "rho": 0.5, "m": None}  # halving and doubling 0.5 are exact
    study = _neighbour_study([
        ("sam", 0.5, None, 0.9),      # the configuration itself: not its own neighbour
        ("sam", 0.25, None, 0.80),    # rho x0.5, same m: in
        ("sam", 1.0, None, 0.81),     # rho x2: in
        ("sam", 0.2499, None, 0.5),   # just outside x0.5
        ("sam", 1.0002, None, 0.5),   # just outside x2
        ("sam", 0.45, 16, 0.82),      # another m at rho x0.9: in
        ("sam", 0.55, 16, 0.83),      # another m at rho x1.1: in
        ("sam", 0.44, 16, 0.5),       # another m beyond 10%
        ("sam", 0.25, 16, 0.5),       # another m and rho x0.5: out
        ("asam", 0.5, None, 0.5),     # another variant
    ])
    got = stability(study, best, 0.85)
    assert got == {"n": 4, "sharp": True, "neighbours": [
        {"rho": 0.25, "m": None, "val_accuracy": 0.80}, {"rho": 1.0, "m": None, "val_accuracy": 0.81},
        {"rho": 0.45, "m": 16, "val_accuracy": 0.82}, {"rho": 0.55, "m": 16, "val_accuracy": 0.83}]}
    assert stability(study, best, 0.83)["sharp"] is False  # one neighbour at the baseline
    assert "sharp" not in stability(study, best, None)
    assert stability(study, {"variant": "sam", "rho": 0.0, "m": None}, 0.5) == {"n": 0, "neighbours": []}


def test_the_same_point_under_a_cheaper_schedule_is_no_neighbour():
    from samtune.search._recommendation import stability

    study = optuna.create_study(direction="maximize")
    for perturb, val in (("always", 0.9), ("stochastic", 0.5), ("late", 0.5)):
        t = study.ask()
        t.set_user_attr("config", {"variant": "sam", "rho": 0.5, "m": None, "perturb": perturb})
        study.tell(t, val)
    best = {"variant": "sam", "rho": 0.5, "m": None, "perturb": "always"}
    assert stability(study, best, 0.8) == {"n": 0, "neighbours": []}
    cheap = {**best, "perturb": "late"}  # the cheaper one's neighbours are not the others either
    assert stability(study, cheap, 0.8) == {"n": 0, "neighbours": []}


def test_the_recommendation_judges_stability_against_the_baselines_validation_accuracy():
    study = _neighbour_study([("sam", 0.05, None, 0.70), ("sam", 0.2, None, 0.71)])
    base = _cand("sgd", [60, 60], 1.0, val=0.75)
    sam = _cand("sam", [90, 90], 2.0, val=0.9)
    sam["config"] = {**sam["config"], "rho": 0.1}
    rec = _build([base, sam], study)
    assert rec.evidence["stability"]["n"] == 2 and rec.evidence["stability"]["sharp"] is True
    assert rec.summary.startswith("use sam c: +30.00 pp at 2.00x the baseline's cost; test accuracy "
                                  "0.9000 vs baseline 0.6000")
    assert rec.verdict == "use" and rec.summary.endswith(
        "; warning: the 2 searched neighbour(s) at rho x0.5-2 or another m all ended below the "
        "baseline's validation accuracy, so the gain sits on a sharp ridge of rho and m")
    base["val_accuracy"] = 0.70  # a neighbour at the baseline: no warning
    assert "warning" not in _build([base, sam], study).summary


def test_the_candidate_settle_extended_is_judged_even_when_another_now_has_a_higher_mean():
    base = _cand("sgd", [80, 80, 80, 80], 1.0, description="base")
    settled = _cand("sam", [90, 90, 90, 70], 2.0, description="settled")  # its 4th seed fell
    other = _cand("asam", [86, 86, 86], 2.0, description="other")  # 3 seeds, higher mean now
    rec = _build([base, settled, other], max_seeds=6)
    assert rec.evidence["candidate"] == "settled" and rec.evidence["seeds"] == [4, 4]


def test_a_baseline_set_aside_by_the_confirmation_is_listed_and_its_runs_counted():
    base = _cand("sgd", [60, 60], 3.0, description="base", trial=0, val=0.6)
    other = _cand("sgd", [55, 57], 3.0, description="base lr/2", trial=1, val=0.6)
    other["config"]["base_kwargs"] = {"lr": 0.025}
    base["config"]["base_kwargs"] = {"lr": 0.05}
    sam = _cand("sam", [90, 90], 7.0, description="sam", trial=2, val=0.9)
    alone, both = _build([base, sam]), _build([base, sam], other_bases=[other])
    assert "confirmed" not in alone.baseline["tuning"]
    assert both.baseline["tuning"]["confirmed"] == [
        {"lr": 0.05, "test_metric": 0.6, "seeds": 2, "chosen": True},
        {"lr": 0.025, "test_metric": pytest.approx(0.56), "seeds": 2, "chosen": False}]
    assert both.compute["confirmation_epochs"] == alone.compute["confirmation_epochs"] + 4
    assert both.verdict == alone.verdict and both.gain == alone.gain  # judged against base alone
