"""The bank's reader, its statistics and truth, on a hand-made three-cell bank with known answers;
smoke runs of decision.py and replay.py; replaying a recorded study reproduces its pruner."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.benchmarks._quick import BENCHMARKS

if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bank import Cell, Store, gain_and_se, paired, truth, within_noise  # noqa: E402
from bank.store import encode_u8  # noqa: E402

N = 100
Y = np.arange(N) % 2


def _run(cell: Cell, seed: int, n_right: int) -> dict:
    pred = Y.copy()
    pred[n_right:] = 1 - pred[n_right:]  # the first n_right examples right, the rest wrong
    return {"type": "run", "key": cell.key, "cell": cell.to_dict(), "seed": seed,
            "history": {"val_acc": [0.5, n_right / N]}, "pred": encode_u8(pred)}


BASE = Cell("sgd", 0.1)
BASE_LOW = Cell("sgd", 0.05)
SAM = Cell("sam", 0.1, 0.05)


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "hand.jsonl.gz")
    s.append({"type": "task", "name": "hand", "epochs": 2, "y_test": encode_u8(Y)})
    for seed, (b, lo, sam) in enumerate([(70, 60, 80), (72, 61, 82), (71, 59, 84)]):
        s.append(_run(BASE, seed, b))
        s.append(_run(BASE_LOW, seed, lo))
        s.append(_run(SAM, seed, sam))
    s.append({"type": "cost", "key": "sgd", "ratio": 1.0})
    s.append({"type": "cost", "key": SAM.cost_key, "ratio": 2.0})
    return s


def test_the_store_reads_back_what_it_appended(store):
    again = Store(store.path)
    assert again.keys() == store.keys() == sorted([BASE.key, BASE_LOW.key, SAM.key])
    assert again.accs(SAM.key) == pytest.approx([0.80, 0.82, 0.84])
    assert again.mean_acc(BASE.key, range(2)) == pytest.approx(0.71)
    assert again.cost(SAM.cost_key) == 2.0 and again.cost("asam|m=None|constant") == math.inf


def test_paired_gain_and_its_standard_error_by_hand(store):
    gain, se = paired(store, SAM.key, BASE.key)
    assert gain == pytest.approx(0.82 - 0.71)
    # per-example shares: SAM right on 80/82/84 first examples, the baseline on 70/72/71
    pa = np.array([(np.arange(N) < k).astype(float) for k in (80, 82, 84)]).mean(0)
    pb = np.array([(np.arange(N) < k).astype(float) for k in (70, 72, 71)]).mean(0)
    d = pa - pb
    expected = math.sqrt(d.var(ddof=1) / N + np.var([0.80, 0.82, 0.84], ddof=1) / 3
                         + np.var([0.70, 0.72, 0.71], ddof=1) / 3)
    assert se == pytest.approx(expected)
    assert gain_and_se(pa, pb, [0.8, 0.82, 0.84], [0.7, 0.72, 0.71]) == pytest.approx((gain, se))


def test_truth_names_the_tuned_baseline_the_best_cell_and_the_verdict(store):
    t = truth(store)
    assert t.baseline == BASE.key and t.baseline_acc == pytest.approx(0.71)
    assert t.best_sam == SAM.key and t.gain == pytest.approx(0.11)
    assert t.sam_helps and t.best == SAM.key  # 11 pp against an se of about 3 pp
    assert t.baseline_lr_edge  # 0.1 is the top of the two-lr grid
    assert t.cheapest_near_best == SAM.key and t.cheapest_cost == 2.0


def test_a_gain_within_the_noise_is_not_help(tmp_path):
    s = Store(tmp_path / "flat.jsonl.gz")
    s.append({"type": "task", "name": "flat", "epochs": 2, "y_test": encode_u8(Y)})
    for seed, (b, sam) in enumerate([(70, 71), (72, 72), (71, 73)]):
        s.append(_run(BASE, seed, b))
        s.append(_run(SAM, seed, sam))
    s.append({"type": "cost", "key": "sgd", "ratio": 1.0})
    s.append({"type": "cost", "key": SAM.cost_key, "ratio": 2.0})
    t = truth(s)
    assert not t.sam_helps and t.best == BASE.key
    assert within_noise(s, SAM.key, BASE.key)
    assert t.cheapest_near_best == BASE.key  # the cheaper of two cells within noise


def test_replay_reproduces_a_recorded_studys_pruning(tmp_path):
    import optuna
    import torch
    from optuna.trial import TrialState

    import samtune
    from samtune.data import from_arrays
    from samtune.search import make_pruner
    from tests.benchmarks._quick import load

    replay = load("replay")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(240, generator=g) > 0).long() + (x[:, 1] > 0.8).long()
    url = f"sqlite:///{tmp_path / 's.db'}"
    samtune.search(from_arrays((x, y)), trials=12, epochs=6, storage=url, study="s",
                   confirm_seeds=1, out=str(tmp_path / "out"), progress=False, space="quick",
                   pruner="median")
    study = optuna.load_study(study_name="s", storage=url)
    done = [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    recorded = [len(t.user_attrs["history"]) if t.state == TrialState.PRUNED else None for t in done]
    assert any(r is not None for r in recorded) and any(r is None for r in recorded)
    trials = [(t.params, t.user_attrs["history"]) for t in done]
    assert replay.replay(trials, make_pruner("median", epochs=6, top_k=2)) == recorded


def test_decision_quick_run_scores_one_search(tmp_path):
    from tests.benchmarks._quick import run_quick

    printed, written = run_quick("decision", tmp_path / "decision.json",
                                 "--keep-studies", str(tmp_path / "studies"))
    assert printed == written
    import optuna  # noqa: PLC0415

    (db,) = (tmp_path / "studies").iterdir()
    assert db.name == "tiny-s0.db"
    (kept,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert kept.n_trials >= printed["runs"][0]["n_trials"]
    (task,) = printed["tasks"]
    assert task["name"] == "tiny" and {"sam_helps", "bank_best", "bank_baseline"} <= set(task)
    (run,) = printed["runs"]
    for key in ("verdict_correct", "regret_pp", "claimed_gain_error_pp", "baseline_gap_pp",
                "compute_runs"):
        assert key in run
    assert run["compute_runs"] > 0 and math.isfinite(run["regret_pp"])
    # the quick bank's costs: sgd 1.0, sam (whole batch, constant) 2.0; any other: none
    config = run["config"]
    plain_sam = config.startswith("sam ") and "schedule=constant m=batch (" in config  # no perturb=
    cheap_sam = config.startswith("sam ") and "schedule=constant m=batch perturb=" in config
    want = 1.0 if config.startswith("sgd") else 2.0 if plain_sam else None
    if cheap_sam:  # 1 + share x (2 - 1): between the baseline's cost and every-step SAM's
        assert 1.0 < run["bank_cost"] < 2.0
        want = run["bank_cost"]
    else:
        assert run["bank_cost"] == want
    if task["sam_helps"] and run["verdict"] == "use" and want is not None:
        assert run["cost_over_cheapest"] == pytest.approx(want / task["cheapest_cost"])
    else:
        assert run["cost_over_cheapest"] is None
    assert "mean_cost_over_cheapest" in printed["summary"]
    assert printed["summary"]["verdict_accuracy"] in (0.0, 1.0)
    assert printed["summary"]["worst_regret_pp"] == pytest.approx(run["regret_pp"])


def test_replay_quick_run(tmp_path):
    from tests.benchmarks._quick import run_quick

    printed, _ = run_quick("replay", tmp_path / "replay.json")
    assert set(printed["summary"]) >= {"none", "forgetting", "median", "hyperband"}
    assert printed["summary"]["none"]["epochs_ratio"] == 1.0
    assert printed["summary"]["none"]["good_pruned_rate"] == 0.0


def test_the_bank_cost_of_a_perturb_schedule_follows_its_share_of_perturbed_steps():
    from bank.store import DATA_DIR
    from decision import bank_cost

    from samtune import SAMConfig

    store = Store(DATA_DIR / "table-clean.jsonl.gz")  # asam, m=16, constant: 3.435x in the bank
    every = SAMConfig(variant="asam", rho=1.0, m=16, base_kwargs={"lr": 0.1})
    assert bank_cost(store, every) == 3.435
    late = SAMConfig(variant="asam", rho=1.0, m=16, base_kwargs={"lr": 0.1},
                     perturb="late", perturb_kwargs={"start": 0.5})
    assert bank_cost(store, late) == round(1 + 0.5 * 2.435, 3)  # half the steps perturb
    sgd = SAMConfig(variant="sgd", rho=0.0, base_kwargs={"lr": 0.1})
    assert bank_cost(store, sgd) == 1.0


def test_a_stored_result_rescored_against_another_truth():
    from types import SimpleNamespace

    from decision import rescore

    run = {"task": "t", "seed": 0, "verdict": "use", "test_acc": 0.80, "claimed_gain_pp": 3.0,
           "search_baseline_acc": 0.76, "bank_cost": 2.4, "verdict_correct": False}
    helps = SimpleNamespace(sam_helps=True, best_acc=0.81, baseline_acc=0.78, cheapest_cost=2.0)
    got = rescore(run, helps)
    assert got["verdict_correct"] and got["true_verdict"] == "use"
    assert got["regret_pp"] == pytest.approx(1.0) and got["actual_gain_pp"] == pytest.approx(2.0)
    assert got["claimed_gain_error_pp"] == pytest.approx(1.0)
    assert got["baseline_gap_pp"] == pytest.approx(2.0)
    assert got["cost_over_cheapest"] == pytest.approx(1.2)
    no = SimpleNamespace(sam_helps=False, best_acc=0.78, baseline_acc=0.78, cheapest_cost=1.0)
    got = rescore(run, no)
    assert not got["verdict_correct"] and got["cost_over_cheapest"] is None
    assert got["regret_pp"] == pytest.approx(-2.0)  # better than the bank's best: its grid missed it
    assert run["verdict_correct"] is False  # the stored run is left as it was


def test_the_truth_table_prints_each_tasks_verdict_from_the_store(tmp_path):
    from bank.build import truth_table  # noqa: PLC0415
    from bank.store import task_path  # noqa: PLC0415

    s = Store(task_path("hand", tmp_path))
    s.append({"type": "task", "name": "hand", "epochs": 2, "y_test": encode_u8(Y),
              "sizes": {"train": 80, "val": 20, "test": N}})
    for seed, (b, sam) in enumerate([(70, 80), (72, 82), (71, 84)]):
        s.append(_run(BASE, seed, b))
        s.append(_run(SAM, seed, sam))
    s.append({"type": "cost", "key": "sgd", "ratio": 1.0})
    s.append({"type": "cost", "key": SAM.cost_key, "ratio": 2.0})
    row = truth_table(["hand"], tmp_path).splitlines()[2]
    assert row.startswith("| hand | 80/20/100, 2 ep | sgd lr 0.1: 0.7100 "
                          "| sam rho 0.05 m batch lr 0.1: 0.8200 | +11.00 ± ")
    assert row.endswith("| yes | sam rho 0.05 m batch lr 0.1 (2.00x) |")
    assert "6 runs" in truth_table(["hand"], tmp_path)


def test_decision_options_pass_numbers_as_numbers_and_reject_a_bad_one(capsys):
    from tests.benchmarks._quick import load  # noqa: PLC0415

    decision = load("decision")
    assert decision.parse_option("trials=12") == ("trials", 12)
    assert decision.parse_option("max_cost=1.5") == ("max_cost", 1.5)
    assert decision.parse_option("pruner=median") == ("pruner", "median")
    assert decision.main(["--option", "trials"]) == 2
    assert "write NAME=VALUE" in capsys.readouterr().err
    assert decision.main(["--option", "trial=12"]) == 2  # a misspelt option name
    assert "trial: not a search option" in capsys.readouterr().err


def _append_many(args) -> None:
    from tests.benchmarks._quick import load  # noqa: PLC0415

    decision = load("decision")
    path, header, who = args
    cache = decision.open_cache(path, header)
    for i in range(80):
        with decision.cache_lock(path):
            cache.append({"type": "run", "key": f"cfg:{who}", "seed": i, "cell": {},
                          "history": {"val_acc": [0.5]}, "pred": encode_u8(Y), "pad": os.urandom(40000).hex()})


def test_decision_cache_stays_readable_when_two_workers_append_to_it(tmp_path):
    import multiprocessing as mp  # noqa: PLC0415

    path = tmp_path / "cache" / "task.jsonl.gz"
    header = {"type": "task", "name": "task", "fingerprint": "f1", "y_test": encode_u8(Y)}
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_append_many, [(path, header, "a"), (path, header, "b")])
    cache = Store(path)  # a corrupt gzip member raises here
    assert cache.header["fingerprint"] == "f1"
    assert [len(cache.seeds(f"cfg:{w}")) for w in "ab"] == [80, 80]


def _candidates_store(tmp_path) -> Store:
    """Three SAM cells whose validation order is the reverse of their test order."""
    s = Store(tmp_path / "cand.jsonl.gz")
    s.append({"type": "task", "name": "cand", "epochs": 2, "y_test": encode_u8(Y)})
    cells = [Cell("sam", 0.1, rho) for rho in (0.02, 0.05, 0.1)]
    for seed in range(3):
        s.append(_run(BASE, seed, 60))
        for i, cell in enumerate(cells):  # test: 70, 80, 90 right; val: 0.9, 0.8, 0.7
            run = _run(cell, seed, 70 + 10 * i)  # val loss 1.0, 0.8, 0.6: it orders as the test
            run["history"] = {"val_acc": [0.5, 0.9 - 0.1 * i], "val_loss": [2.0, 1.0 - 0.2 * i]}
            s.append(run)
    return s


def test_candidate_rules_replayed_on_a_bank_whose_validation_misleads(tmp_path):
    from tests.benchmarks._quick import load  # noqa: PLC0415

    candidates = load("candidates")
    store = _candidates_store(tmp_path)
    # raw top-1 takes the best validation value: the worst test cell, 20 pp below the best
    one = candidates.simulate(store, searches=3, trials=3, top_k=1, seed=0, rules=("raw",))
    assert one["raw"]["regret_pp"] == pytest.approx(20.0) and one["raw"]["hit"] == 0.0
    two = candidates.simulate(store, searches=3, trials=3, top_k=2, seed=0, rules=("raw",))
    assert two["raw"]["regret_pp"] == pytest.approx(10.0)
    every = candidates.simulate(store, searches=3, trials=3, top_k=3, seed=0)
    assert all(r["regret_pp"] == pytest.approx(0.0) and r["hit"] == 1.0 for r in every.values())
    # the loss orders the cells as the test does: its top-1, and raw+loss's second place, hit
    by_loss = candidates.simulate(store, searches=3, trials=3, top_k=1, seed=0,
                                  rules=("loss", "raw+loss"))
    assert by_loss["loss"]["regret_pp"] == pytest.approx(0.0)
    assert by_loss["raw+loss"]["regret_pp"] == pytest.approx(20.0)  # its one place: by value
    mixed = candidates.simulate(store, searches=3, trials=3, top_k=2, seed=0, rules=("raw+loss",))
    assert mixed["raw+loss"]["regret_pp"] == pytest.approx(0.0)
    as_loss = candidates.simulate(store, searches=3, trials=3, top_k=1, seed=0, rules=("raw",),
                                  value="val_loss")  # a trial reporting its loss: raw is loss
    assert as_loss["raw"]["regret_pp"] == pytest.approx(0.0)


def test_design_rule_takes_the_best_of_each_batch_design():
    from tests.benchmarks._quick import load  # noqa: PLC0415

    candidates = load("candidates")
    cells = [Cell("sam", 0.1, 0.05), Cell("sam", 0.1, 0.1), Cell("sam", 0.1, 0.05, m=16),
             Cell("asam", 0.1, 1.0)]
    values = np.array([0.9, 0.85, 0.7, 0.8])  # the whole batch holds the top three values
    assert candidates.pick("raw", cells, values, 0.1, 2) == cells[:2]
    assert candidates.pick("design", cells, values, 0.1, 2) == [cells[0], cells[2]]
    assert candidates.pick("design", cells, values, 0.1, 3) == [cells[0], cells[2], cells[1]]
    whole = [c for c in cells if c.m is None]  # one design only: the rule is the raw top-k
    assert candidates.pick("design", whole, values[[0, 1, 3]], 0.1, 2) == whole[:2]


def test_seed_spread_splits_a_cells_spread_into_flips_and_what_the_seeds_share(tmp_path):
    from tests.benchmarks._quick import load  # noqa: PLC0415

    seed_spread = load("seed_spread")
    s = Store(tmp_path / "spread.jsonl.gz")
    s.append({"type": "task", "name": "spread", "epochs": 2, "y_test": encode_u8(Y)})
    flip, shared = Cell("sam", 0.1, 0.05), Cell("sam", 0.1, 0.1)
    n = len(Y)
    for seed, right in enumerate((n // 2, n // 2)):  # the same accuracy, other examples right
        run = _run(flip, seed, right)
        run["pred"] = encode_u8(np.where(np.arange(n) % 2 == seed, Y, (Y + 1) % 2))
        s.append(run)
    for seed, right in enumerate((n, 0)):  # one seed right everywhere, the other nowhere
        s.append(_run(shared, seed, right))
    spread, flips, level, _ = seed_spread.parts(s, flip.key)
    assert spread == 0.0 and flips == pytest.approx(0.5 / n) and level == 0.0
    spread, flips, level, _ = seed_spread.parts(s, shared.key)
    assert spread == pytest.approx(0.5) and level == pytest.approx(0.5 - 0.5 / n)


def test_verdict_size_calls_a_large_gain_use_at_once_and_no_gain_rarely():
    from tests.benchmarks._quick import load  # noqa: PLC0415

    verdict_size = load("verdict_size")
    big = verdict_size.simulate(20, shared=0.0, shift=2.0)
    assert big["samtune"] == {"use": 1.0, "seeds": 3.0}  # +2 logits: decided at the first look
    none = verdict_size.simulate(100, shared=0.0, shift=0.0)
    assert none["samtune"]["use"] <= none["z=2 each look"]["use"] <= 0.1
    assert 3.0 <= none["samtune"]["seeds"] <= 6.0


def test_verdict_size_one_look_judges_each_pair_once_at_its_seeds():
    from tests.benchmarks._quick import load  # noqa: PLC0415

    verdict_size = load("verdict_size")
    one = verdict_size.simulate(20, shared=0.0, shift=2.0, one_look=4)
    assert one["samtune"] == {"use": 1.0, "seeds": 4.0} and one["z=2 each look"]["seeds"] == 4.0
    none = verdict_size.simulate(100, shared=0.0, shift=0.0, one_look=3)
    assert none["samtune"]["use"] <= 0.1
    assert verdict_size.main(["--one-look", "7"]) == 2


def test_the_bank_makes_the_benchmarks_measure_the_samtune_of_their_own_checkout(tmp_path):
    """A worktree's benchmark imports the worktree's samtune, not an editable install's."""
    bench = tmp_path / "benchmarks"
    shutil.copytree(BENCHMARKS / "bank", bench / "bank", ignore=shutil.ignore_patterns("data", "__pycache__"))
    (tmp_path / "samtune").mkdir()
    (tmp_path / "samtune" / "__init__.py").write_text("")
    code = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', " + repr(str(BENCHMARKS.parent))
            + ")]; sys.path.insert(0, " + repr(str(bench)) + "); import bank, samtune; print(samtune.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == str(tmp_path / "samtune" / "__init__.py")
