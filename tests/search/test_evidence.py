"""The sequential verdict: known answers of ``decide`` at its boundaries, and ``settle``
adding seeds only while the decision is open."""

from __future__ import annotations

import math

import pytest
import torch

from samtune.search._confirm import settle
from samtune.search._evidence import (
    Z,
    decide,
    final,
    gain_evidence,
    paired_gain,
    projected_se,
    seed_level_var,
    seeds_to_settle,
    z_for,
)


def _ev(gain, test_se, seed_se, seeds=3):
    se = math.sqrt(test_se**2 + (seed_se or 0.0) ** 2)
    return {"gain": gain, "se": se, "bound": Z * se, "test_se": test_se, "seed_se": seed_se,
            "n_test": 500, "seeds": [seeds, seeds]}


def test_projected_se_shrinks_the_seed_term_only():
    ev = _ev(0.01, 0.003, 0.004, seeds=3)
    assert projected_se(ev, 3) == pytest.approx(0.005)
    assert projected_se(ev, 12) == pytest.approx(math.sqrt(0.003**2 + 0.004**2 * 3 / 12))
    assert projected_se(ev, 2) == pytest.approx(0.005)  # never fewer than it has
    # the test term's share that the examples' flips make shrinks with the seeds too
    flips = {**ev, "flip_se": 0.002}
    assert projected_se(flips, 3) == pytest.approx(0.005)
    assert projected_se(flips, 12) == pytest.approx(
        math.sqrt(0.003**2 - 0.002**2 + (0.002**2 + 0.004**2) * 3 / 12))


def _gain_draws(reps, n, seeds, shared_sd, rng):
    """Gains of A over B, each replication on fresh test examples and fresh seeds: examples
    of every difficulty, A better than B example by example on average, each seed shifting
    every example's logit by one draw of N(0, shared_sd) (a better or worse model altogether)
    and then flipping examples independently."""
    import numpy as np  # noqa: PLC0415

    out = []
    for _ in range(reps):
        logit = rng.normal(1.5, 2.0, n)
        recs = []
        for shift in (rng.normal(0.15, 0.5, n), 0.0):
            masks = [torch.from_numpy(rng.random(n) < 1 / (1 + np.exp(-(logit + shift
                                                                         + rng.normal(0, shared_sd)))))
                     for _ in range(seeds)]
            recs.append({"test_accuracy": {"per_seed": [m.double().mean().item() for m in masks]},
                         "correct": masks})
        out.append(paired_gain(*recs))
    return out


@pytest.mark.parametrize("shared_sd", [0.0, 0.1, 0.6])
def test_the_standard_error_matches_the_gains_spread_over_fresh_examples_and_seeds(shared_sd):
    """Monte Carlo known answer: the se's root mean square is the spread of the gain it
    estimates (examples and seeds drawn afresh). Adding every seed's whole accuracy spread
    counted the flips twice and overstated it by about 40% where the seeds share nothing."""
    import numpy as np  # noqa: PLC0415

    evs = _gain_draws(600, 600, 3, shared_sd, np.random.default_rng(0))
    spread = np.std([ev["gain"] for ev in evs])
    rms = math.sqrt(np.mean([ev["se"] ** 2 for ev in evs]))
    assert 0.9 * spread < rms < 1.2 * spread  # a 3-seed variance clipped at 0 errs wide
    doubled = math.sqrt(np.mean([ev["se"] ** 2 + ev["flip_se"] ** 2 for ev in evs]))
    if shared_sd <= 0.1:
        assert doubled > 1.25 * spread


def test_the_seed_level_variance_leaves_out_the_examples_flips():
    flips = [torch.tensor([1, 0] * 50).bool(), torch.tensor([0, 1] * 50).bool()]
    assert seed_level_var([0.5, 0.5], flips) == (0.0, 0.005)
    accs = [0.6, 0.4]  # two seeds whose examples do not line up with them: the whole spread
    assert seed_level_var(accs, []) == (pytest.approx(0.02), 0.0)


@pytest.mark.parametrize(("gain", "max_seeds", "want"), [
    (0.0101, 3, "use"),            # above 2 se = 0.01
    (0.0100, 3, "inconclusive"),   # exactly the bound is not enough
    (0.0060, 3, "inconclusive"),   # between se and 2 se with no seed left
    (0.0050, 3, "keep-baseline"),  # one se: even +1 se more would only reach the bound
    (0.0, 12, "keep-baseline"),    # no gain measured
    (-0.02, 12, "keep-baseline"),
    (0.0030, 12, "open"),          # more seeds could show it: 0.003 + 0.005 > 2 * 0.0036
    (0.0020, 12, "keep-baseline"),  # futile even with 12 seeds: 0.007 <= 2 * 0.0036
])
def test_the_decision_at_its_boundaries(gain, max_seeds, want):
    ev = _ev(gain, 0.003, 0.004)  # se 0.005; with 12 seeds: sqrt(9 + 4) e-3 = 0.0036
    assert decide(ev, max_seeds) == ("open" if want == "inconclusive" else want)
    assert final(ev, max_seeds) == ("inconclusive" if want == "open" else want)


def test_nothing_to_compare_keeps_the_baseline():
    assert decide({**_ev(math.nan, 0.003, 0.004)}, 6) == "keep-baseline"
    one = {"test_accuracy": {"per_seed": [1.0]}, "correct": [torch.tensor([True])]}
    other = {"test_accuracy": {"per_seed": [0.0]}, "correct": [torch.tensor([False])]}
    ev = paired_gain(one, other)  # one seed, one example: no noise estimate at all
    assert ev["n_test"] == 1 and math.isnan(ev["se"]) and ev["seed_se"] is None
    assert final(ev, 6) == "keep-baseline"


def test_seeds_to_settle():
    assert seeds_to_settle(_ev(0.008, 0.003, 0.004, seeds=3)) == math.ceil(0.004**2 * 3 / (0.004**2 - 0.003**2))
    assert seeds_to_settle(_ev(0.005, 0.003, 0.004)) is None  # the test split's own noise is above it
    assert seeds_to_settle(_ev(-0.01, 0.003, 0.004)) is None


class _Runner:
    """Hands out predetermined test masks, one per seed, per configuration."""

    def __init__(self, masks: dict[str, list[torch.Tensor]]) -> None:
        self.masks, self.calls = masks, []

    def add_seed(self, rec):
        variant = rec["config"]["variant"]
        mask = self.masks[variant][len(rec["test_accuracy"]["per_seed"])]
        self.calls.append(variant)
        rec["correct"].append(mask)
        rec["test_accuracy"]["per_seed"].append(mask.float().mean().item())
        accs = rec["test_accuracy"]["per_seed"]
        rec["test_accuracy"]["mean"] = sum(accs) / len(accs)


def _record(variant, runner, seeds):
    rec = {"config": {"variant": variant}, "test_accuracy": {"per_seed": [], "mean": math.nan},
           "correct": []}
    for _ in range(seeds):
        runner.add_seed(rec)
    return rec


def _masks(n, rights):
    out = []
    for r in rights:
        m = torch.zeros(n, dtype=torch.bool)
        m[:r] = True
        out.append(m)
    return out


def test_settle_adds_seeds_to_the_baseline_and_the_best_candidate_until_decided():
    n = 2000
    runner = _Runner({"sgd": _masks(n, [1600, 1560, 1640, 1600, 1600, 1600]),
                      "sam": _masks(n, [1650, 1600, 1690, 1640, 1640, 1640]),
                      "asam": _masks(n, [1500] * 6)})
    confirmed = [_record(v, runner, 3) for v in ("sgd", "sam", "asam")]
    runner.calls.clear()
    assert decide(paired_gain(confirmed[1], confirmed[0]), 6) == "open"
    assert settle(confirmed, runner, max_seeds=6) == "decided"
    assert runner.calls and set(runner.calls) == {"sgd", "sam"}  # never the worse candidate
    seeds = len(confirmed[1]["test_accuracy"]["per_seed"])
    assert 3 < seeds <= 6 and len(confirmed[0]["test_accuracy"]["per_seed"]) == seeds
    assert final(paired_gain(confirmed[1], confirmed[0]), 6) == "use"


def test_settle_stops_at_the_budget_and_at_max_seeds():
    n = 2000
    runner = _Runner({"sgd": _masks(n, [1600, 1560, 1640] * 3), "sam": _masks(n, [1650, 1600, 1690] * 3)})
    confirmed = [_record(v, runner, 3) for v in ("sgd", "sam")]
    assert settle(confirmed, runner, max_seeds=9, afford=lambda runs: False) == "budget"
    assert len(confirmed[1]["test_accuracy"]["per_seed"]) == 3
    assert settle(confirmed, runner, max_seeds=3) == "max seeds"
    runner.calls.clear()
    decided = settle([_record("sgd", runner, 3)], runner, max_seeds=9)
    assert decided == "decided" and runner.calls == ["sgd"] * 3  # no SAM candidate: nothing to settle


def test_fold_runs_are_paired_clusters_with_a_cluster_robust_standard_error():
    import numpy as np

    from samtune.search._evidence import fold_gain

    gen = torch.Generator().manual_seed(1)
    sizes = (40, 41, 40)
    base = [(torch.rand(n, generator=gen) < 0.7).double() for n in sizes]
    sam = [(torch.rand(n, generator=gen) < 0.8).double() for n in sizes]
    ev = fold_gain({"fold_runs": sam, "k": 7}, {"fold_runs": base + [None], "k": 7})
    d = np.concatenate([(a - b).numpy() for a, b in zip(sam, base)])
    n = len(d)
    assert ev["n_test"] == n == 121 and ev["seeds"] == [3, 3] and ev["design"] == "folds"
    assert ev["gain"] == pytest.approx(d.mean())
    assert ev["test_se"] == pytest.approx(math.sqrt(d.var(ddof=1) / n))
    resid = [(a - b).sum().item() - d.mean() * len(a) for a, b in zip(sam, base)]
    cluster = 3 / 2 * sum(r * r for r in resid) / n**2
    assert ev["se"] == pytest.approx(math.sqrt(max(cluster, d.var(ddof=1) / n)))
    assert ev["bound"] == pytest.approx(2 * ev["se"])


def test_on_folds_more_runs_shrink_the_test_term_until_a_repeat_is_full():
    ev = {**_ev(0.01, 0.004, 0.002, seeds=3), "design": "folds", "k": 6}
    assert projected_se(ev, 6) == pytest.approx(math.sqrt(0.004**2 / 2 + 0.002**2 / 2))
    assert projected_se(ev, 12) == pytest.approx(math.sqrt(0.004**2 / 2 + 0.002**2 / 4))
    single = _ev(0.01, 0.004, 0.002, seeds=3)
    assert projected_se(single, 6) == pytest.approx(math.sqrt(0.004**2 + 0.002**2 / 2))


def test_the_best_of_several_candidates_needs_bonferronis_z():
    from statistics import NormalDist

    assert z_for(1) == Z and z_for(0) == Z
    for n in (2, 3, 5):  # n candidates at z_for(n): a null gain clears it as often as one at Z
        tail = 1 - NormalDist().cdf(z_for(n))
        assert n * tail == pytest.approx(1 - NormalDist().cdf(Z), rel=0.02)
    ev = {**_ev(0.0101, 0.003, 0.004), "z": z_for(3)}  # above 2 se = 0.01, below 2.43 se
    assert decide(ev, 3) == "open" and final(ev, 3) == "inconclusive"
    assert decide(_ev(0.0101, 0.003, 0.004), 3) == "use"  # one candidate: z = 2


def test_settle_judges_the_best_of_three_at_their_z():
    n = 2000  # sam gets 5 more of 2000 examples right at every seed: gain 2.24 se
    masks = {"sgd": _masks(n, [1600] * 6), "sam": _masks(n, [1605] * 6),
             "asam": _masks(n, [1500] * 6), "obf": _masks(n, [1500] * 6)}
    runner = _Runner(masks)
    alone = [_record(v, runner, 3) for v in ("sgd", "sam")]
    ev = gain_evidence(alone[1], alone[0], None, candidates=1)
    assert 2.0 < ev["gain"] / ev["se"] < 2.28 and ev["z"] == 2.0 and ev["bound"] == 2.0 * ev["se"]
    assert settle(alone, runner, max_seeds=6) == "decided"  # one candidate: use at once
    three = [_record(v, runner, 3) for v in ("sgd", "sam", "asam", "obf")]
    runner.calls.clear()
    assert settle(three, runner, max_seeds=6) == "max seeds"  # 2.24 se < 2.43: stays open
    assert set(runner.calls) == {"sgd", "sam"} and len(three[1]["test_accuracy"]["per_seed"]) == 6
    assert gain_evidence(three[1], three[0], None, candidates=3)["z"] == 2.43


def test_settle_judges_at_the_candidates_z_however_many_seeds_it_adds(monkeypatch):
    from samtune.search import _confirm

    seen = []
    real = _confirm.gain_evidence

    def spy(*args, **kwargs):
        seen.append(kwargs.get("z"))
        return real(*args, **kwargs)

    monkeypatch.setattr(_confirm, "gain_evidence", spy)
    n = 2000
    runner = _Runner({"sgd": _masks(n, [1600, 1560, 1640, 1600, 1600, 1600]),
                      "sam": _masks(n, [1650, 1600, 1690, 1640, 1640, 1640]),
                      "asam": _masks(n, [1500] * 6)})
    confirmed = [_record(v, runner, 3) for v in ("sgd", "sam", "asam")]
    settle(confirmed, runner, max_seeds=6)
    # two SAM-family candidates at every look: at most Bonferroni's 2.28 for two (the seed
    # count taken for the candidates' gave z_for(4) = 2.53 and up once a seed was added)
    assert len(seen) >= 2 and all(Z <= z <= z_for(2) for z in seen)


def _seed_record(masks):
    accs = [m.float().mean().item() for m in masks]
    return {"config": {"variant": "sam"}, "correct": masks,
            "test_accuracy": {"per_seed": accs, "mean": sum(accs) / len(accs)}}


def test_joint_z_is_the_max_t_quantile_of_the_gains_correlation():
    import numpy as np
    from scipy.optimize import brentq
    from scipy.stats import multivariate_normal

    from samtune.search._evidence import _ONE_SIDED, joint_z

    gen = torch.Generator().manual_seed(3)
    n = 600
    shared = torch.rand(n, generator=gen) < 0.5  # examples both candidates tend to gain

    def masks(p):
        return [(torch.rand(n, generator=gen) < p) | (shared & (torch.rand(n, generator=gen) < 0.6))
                for _ in range(3)]

    base = _seed_record([torch.rand(n, generator=gen) < 0.7 for _ in range(3)])
    a, b = _seed_record(masks(0.5)), _seed_record(masks(0.5))
    z, how = joint_z([a, b], base)
    # the covariance of the two gains by the formula, computed here independently
    q = torch.stack(base["correct"]).double().mean(0).numpy()
    d = [torch.stack(r["correct"]).double().mean(0).numpy() - q for r in (a, b)]
    var_b = np.var(base["test_accuracy"]["per_seed"], ddof=1) / 3
    cov = np.cov(np.stack(d)) / n + var_b
    for j, r in enumerate((a, b)):
        cov[j, j] += np.var(r["test_accuracy"]["per_seed"], ddof=1) / 3
    rho = cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])
    assert 0.2 < rho < 0.9  # correlated, not identical
    mvn = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]])
    want = brentq(lambda c: 1 - mvn.cdf([c, c]) - _ONE_SIDED, 1.5, 3.5)
    assert how == "max-t" and z == pytest.approx(want, abs=0.015)
    assert Z < z < z_for(2)  # correlated gains need less than Bonferroni's z


def test_joint_z_for_independent_gains_is_bonferronis_and_for_one_candidate_z():
    from samtune.search._evidence import joint_z
    from samtune.metrics import Metric

    n = 400
    right = torch.ones(n, dtype=torch.bool)
    base = _seed_record([right])  # right everywhere: each gain's noise is the candidate's own
    a = _seed_record([torch.tensor([1, 1, 0, 0] * (n // 4)).bool()])
    b = _seed_record([torch.tensor([1, 0, 1, 0] * (n // 4)).bool()])  # uncorrelated with a
    z, how = joint_z([a, b], base)
    assert how == "max-t" and z == pytest.approx(z_for(2), abs=0.01)
    assert joint_z([a], base) == (Z, "single")
    assert joint_z([a, b], base, Metric("balanced_accuracy", 2)) == (z_for(2), "bonferroni")
