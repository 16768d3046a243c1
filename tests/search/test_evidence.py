"""The sequential verdict: known answers of ``decide`` at its boundaries, and ``settle``
adding seeds only while the decision is open."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

from samtune.search._confirm import settle
from samtune.search._evidence import (
    Z,
    critical_z,
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


def _flipping(n, p_base, p_sam, seed, seeds=6):
    """Masks whose examples flip independently from seed to seed (no shared seed effect):
    the baseline right with probability ``p_base`` on each example, sam with ``p_sam``."""
    gen = torch.Generator().manual_seed(seed)
    base = [torch.rand(n, generator=gen) < p_base for _ in range(seeds)]
    sam = [torch.rand(n, generator=gen) < p_sam for _ in range(seeds)]
    return base, sam


def test_settle_adds_seeds_to_the_baseline_and_the_best_candidate_until_decided():
    n = 2000
    base, sam = _flipping(n, 0.80, 0.82, seed=3)  # +2 pp: 1.8 se at 3 seeds, 2.6 at 6
    runner = _Runner({"sgd": base, "sam": sam, "asam": _masks(n, [1500] * 9)})
    confirmed = [_record(v, runner, 3) for v in ("sgd", "sam")]
    runner.calls.clear()
    looks = (3, 6)
    assert decide(gain_evidence(confirmed[1], confirmed[0], None, first_and_most=looks), 6) == "open"
    assert settle(confirmed, runner, max_seeds=6) == "decided"
    assert runner.calls and set(runner.calls) == {"sgd", "sam"}
    seeds = len(confirmed[1]["test_accuracy"]["per_seed"])
    assert 3 < seeds <= 6 and len(confirmed[0]["test_accuracy"]["per_seed"]) == seeds
    ev = gain_evidence(confirmed[1], confirmed[0], None, first_and_most=looks)
    # judged at the bound of the look it stopped at (O'Brien-Fleming: the later, the lower)
    factors = ev["look_factors"]
    assert len(factors) == ev["looks"] == 4 and factors == sorted(factors, reverse=True)
    assert factors[-1] >= 1.0 and ev["first_look"] == 3
    assert final(ev, 6) == "use" and ev["z"] == critical_z(2.0, ev["df"], factors[seeds - 3])
    # a worse third candidate gets no seed (and raises the z of the best of two)
    worse = [_record(v, runner, 3) for v in ("sgd", "sam", "asam")]
    runner.calls.clear()
    settle(worse, runner, max_seeds=6)
    assert "asam" not in runner.calls


def test_settle_stops_at_the_budget_and_at_max_seeds():
    n = 2000
    base, sam = _flipping(n, 0.80, 0.82, seed=3)
    runner = _Runner({"sgd": base, "sam": sam})
    confirmed = [_record(v, runner, 3) for v in ("sgd", "sam")]
    assert settle(confirmed, runner, max_seeds=9, afford=lambda runs: False) == "budget"
    assert len(confirmed[1]["test_accuracy"]["per_seed"]) == 3
    assert settle(confirmed, runner, max_seeds=3) == "max seeds"  # one look: 1.8 se < 2
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
    n = 2000  # sam gets 5 more of 2000 examples right at every seed: gain sqrt(5) = 2.24 se
    masks = {"sgd": _masks(n, [1600] * 6), "sam": _masks(n, [1605] * 6),
             "asam": _masks(n, [1500] * 6), "obf": _masks(n, [1500] * 6)}
    runner = _Runner(masks)
    alone = [_record(v, runner, 3) for v in ("sgd", "sam")]
    ev = gain_evidence(alone[1], alone[0], None, candidates=1)
    assert ev["gain"] / ev["se"] == pytest.approx(5 ** 0.5, rel=0.01)
    assert ev["z"] == 2.0 and ev["bound"] == 2.0 * ev["se"] and ev["df"] is None
    # one candidate, looks from 3 to 6 seeds: the seeds agree on every example, so more seeds
    # add no information, the looks are one, and z stays 2 < 2.24: use at once
    assert settle(alone, runner, max_seeds=6) == "decided"
    three = [_record(v, runner, 3) for v in ("sgd", "sam", "asam", "obf")]
    runner.calls.clear()
    assert settle(three, runner, max_seeds=6) == "max seeds"  # the best of three: stays open
    assert set(runner.calls) == {"sgd", "sam"} and len(three[1]["test_accuracy"]["per_seed"]) == 6
    assert gain_evidence(three[1], three[0], None, candidates=3)["z"] == 2.43


def test_settle_judges_at_the_candidates_z_however_many_seeds_it_adds(monkeypatch):
    from samtune.search import _confirm

    seen = []
    real = _confirm.gain_evidence

    def spy(*args, **kwargs):
        seen.append((kwargs.get("z"), kwargs.get("first_and_most")))
        return real(*args, **kwargs)

    monkeypatch.setattr(_confirm, "gain_evidence", spy)
    n = 2000
    base, sam = _flipping(n, 0.80, 0.82, seed=3)
    runner = _Runner({"sgd": base, "sam": sam, "asam": _masks(n, [1500] * 9)})
    confirmed = [_record(v, runner, 3) for v in ("sgd", "sam", "asam")]
    settle(confirmed, runner, max_seeds=6)
    # two SAM-family candidates at every look: at most Bonferroni's 2.28 for two (the seed
    # count taken for the candidates' gave z_for(4) = 2.53 and up once a seed was added), and
    # the looks are the design's, 3 to 6, however many seeds were added
    assert len(seen) >= 2 and all(Z <= z <= z_for(2) and looks == (3, 6) for z, looks in seen)


@pytest.mark.parametrize("shared_sd", [0.0, 0.3])
def test_a_configuration_no_better_than_the_baseline_is_rarely_used(shared_sd):
    """The size of the sequential verdict: two configurations with the same accuracy on every
    example, 3 seeds then up to 6, a look per seed. The narrower SE alone, at z = 2 at every
    look, called "use" in 4-10% of such pairs (Monte Carlo, 1,500 pairs); with the t quantile
    at the seed terms' df and the looks' bounds (look_bounds) it stays near one look's 2.3%."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(0)
    uses, reps = 0, 400
    for _ in range(reps):
        logit = rng.normal(2.0, 2.0, 700)
        sides = [[torch.from_numpy(rng.random(700) < 1 / (1 + np.exp(-(logit + rng.normal(0, shared_sd)))))
                  for _ in range(6)] for _ in range(2)]
        seeds = 3
        while True:
            a, b = ({"correct": m[:seeds], "test_accuracy": {"per_seed": [x.double().mean().item()
                                                                           for x in m[:seeds]]}}
                    for m in sides)
            verdict = decide(gain_evidence(a, b, None, first_and_most=(3, 6)), 6)
            if verdict != "open" or seeds == 6:
                break
            seeds += 1
        uses += verdict == "use"
    assert uses / reps <= 0.05


def test_futility_is_judged_at_the_z_the_most_seeds_would_have():
    """A gain of 1.55 se at 3 seeds whose seed term rests on 5 df: at today's z (3.98: t at 5 df,
    times the first look's bound) even one se more could not clear the bound at 6 seeds, but
    6 seeds bring about 12 df and the last look's lower bound, under which it could: the
    verdict stays open."""
    from samtune.search._evidence import projected_z  # noqa: PLC0415

    ev = _ev(0.012, 0.0039, 0.0067)
    factors = [1.42, 1.22, 1.1, 1.0]
    z_now = critical_z(2.3, 5.0, factors[0])
    ev.update(z=z_now, z_candidates=2.3, df=5.0, looks=4, first_look=3, look_factors=factors,
              bound=z_now * ev["se"])
    assert projected_z(ev, 3) == z_now and projected_z(ev, 6) == critical_z(2.3, 12.5, 1.0)
    assert ev["gain"] + ev["se"] <= z_now * projected_se(ev, 6)  # futile at today's z
    assert decide(ev, 6) == "open"
    assert decide({**ev, "z_candidates": 3.2}, 6) == "keep-baseline"  # futile at any df


def test_the_critical_z_for_few_seeds_and_many_looks():
    from scipy.stats import t  # noqa: PLC0415

    from samtune.search._evidence import satterthwaite

    assert critical_z(2.0, None) == 2.0 and critical_z(2.0, math.inf) == 2.0
    assert critical_z(2.0, 4) == pytest.approx(t.isf(0.02275, 4), abs=0.01)  # the same tail
    assert critical_z(2.28, 4) > critical_z(2.0, 4)
    assert critical_z(2.0, math.inf, 1.2) == 2.4
    assert satterthwaite([(1.0, 2), (1.0, 2)]) == pytest.approx(4.0)
    assert satterthwaite([(1e-9, math.inf), (1.0, 2)]) == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("looks,pocock,obf", [
    (2, 2.178, 1.977), (3, 2.289, 2.004), (4, 2.361, 2.024), (5, 2.413, 2.040)])
def test_the_crossing_integral_gives_the_published_group_sequential_constants(looks, pocock, obf):
    """Equally spaced looks at two-sided 0.05 (Jennison and Turnbull, Tables 2.1 and 2.3):
    Pocock's constant bound and O'Brien and Fleming's c (bounds c sqrt(K / k))."""
    from samtune.search._evidence import crossing_chance, look_bounds  # noqa: PLC0415

    fractions = [(k + 1) / looks for k in range(looks)]
    assert crossing_chance([pocock] * looks, fractions) == pytest.approx(0.025, abs=3e-4)
    bounds = look_bounds(fractions, 1.96)
    assert bounds[-1] == pytest.approx(obf, abs=2e-3)
    assert bounds == pytest.approx([obf * math.sqrt(looks / (k + 1)) for k in range(looks)], abs=5e-3)


def test_look_bounds_hold_the_single_looks_tail_in_a_monte_carlo_of_the_looks():
    """Nested looks at 3 to 6 seeds where a third of the variance never shrinks: Brownian
    motion at the information fractions crosses the bounds about as often as one look at 2.3."""
    import numpy as np  # noqa: PLC0415

    from samtune.search._evidence import information_fractions, look_bounds  # noqa: PLC0415

    ev = {"se": 0.01, "test_se": 0.008, "flip_se": 0.006, "seed_se": 0.006, "seeds": [3, 3]}
    fr = information_fractions(ev, 3, 6)
    assert fr[-1] == 1.0 and all(a < b for a, b in zip(fr, fr[1:])) and fr[0] > 0.5
    bounds = look_bounds(fr, 2.3)
    rng = np.random.default_rng(0)
    steps = np.diff([0.0, *fr])
    w = np.cumsum(rng.standard_normal((200_000, len(fr))) * np.sqrt(steps), axis=1)
    crossed = (w / np.sqrt(fr) > np.array(bounds)).any(axis=1).mean()
    single = 1 - NormalDist().cdf(2.3)
    assert crossed == pytest.approx(single, rel=0.08)
    assert (w[:, -1] > 2.3).mean() < crossed  # the looks alone would cross more at z = 2.3
    assert ((w / np.sqrt(fr)) > 2.3).any(axis=1).mean() > 1.3 * single


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
    from samtune.metrics import Metric
    from samtune.search._evidence import joint_z

    n = 400
    right = torch.ones(n, dtype=torch.bool)
    base = _seed_record([right])  # right everywhere: each gain's noise is the candidate's own
    a = _seed_record([torch.tensor([1, 1, 0, 0] * (n // 4)).bool()])
    b = _seed_record([torch.tensor([1, 0, 1, 0] * (n // 4)).bool()])  # uncorrelated with a
    z, how = joint_z([a, b], base)
    assert how == "max-t" and z == pytest.approx(z_for(2), abs=0.01)
    assert joint_z([a], base) == (Z, "single")
    assert joint_z([a, b], base, Metric("balanced_accuracy", 2)) == (z_for(2), "bonferroni")


def test_the_crossing_integral_with_a_drift_is_the_power_of_the_looks():
    """With a drift (the gain's z at all the information) one look clears b with probability
    1 - Phi(b - drift); two looks more often than the last one alone, and as often as a Monte
    Carlo of the Brownian motion says; no look never clears."""
    import numpy as np  # noqa: PLC0415

    from samtune.search._evidence import crossing_chance  # noqa: PLC0415

    assert crossing_chance([1.96], [1.0], drift=1.0) == pytest.approx(1 - NormalDist().cdf(0.96), abs=1e-3)
    assert crossing_chance([1.96], [0.25], drift=2.0) == pytest.approx(1 - NormalDist().cdf(1.96 - 1.0), abs=1e-3)
    assert crossing_chance([], []) == 0.0
    bounds, fr = [2.5, 2.0], [0.4, 1.0]
    rng = np.random.default_rng(1)
    steps = np.diff([0.0, *fr])
    w = np.cumsum(rng.standard_normal((200_000, 2)) * np.sqrt(steps) + 1.5 * steps, axis=1)
    mc = (w / np.sqrt(fr) > np.array(bounds)).any(axis=1).mean()
    got = crossing_chance(bounds, fr, drift=1.5)
    assert got == pytest.approx(mc, abs=0.005) and got > 1 - NormalDist().cdf(2.0 - 1.5)


def test_information_fractions_follow_the_variance_that_more_seeds_shrink():
    from samtune.search._evidence import information_fractions  # noqa: PLC0415

    nan = float("nan")
    seeds_only = {"se": 0.01, "test_se": nan, "seed_se": 0.01, "seeds": [1, 1]}
    assert information_fractions(seeds_only, 1, 3) == pytest.approx([1 / 3, 2 / 3, 1.0])
    # from 2 seeds on, a test term of which half the variance is flips: var(s) = a + b / s
    ev = {"se": 0.02, "test_se": 0.02 ** 0.5 * 0.1, "flip_se": 0.01, "seed_se": 0.01, "seeds": [2, 2]}
    a, b = 0.01**2, 2 * (0.01**2 + 0.01**2)  # kept test part; flips and seeds times S
    want = [(a + b / 4) / (a + b / s) for s in (2, 3, 4)]
    assert information_fractions(ev, 2, 4) == pytest.approx(want)
    # on folds the test term shrinks until a repeat of the k folds is full, then stays
    folds = {"se": 0.01, "test_se": 0.01, "seed_se": 0.0, "seeds": [2, 2], "design": "folds", "k": 3}
    assert information_fractions(folds, 2, 4) == pytest.approx([2 / 3, 1.0, 1.0])
    no_k = {**folds, "k": None}
    assert information_fractions(no_k, 2, 4) == pytest.approx([2 / 4, 3 / 4, 1.0])
    # nothing to split: in proportion to the seeds
    for unknown in ({**ev, "se": nan}, {"se": 0.0, "test_se": 0.0, "seed_se": 0.0, "seeds": [2, 2]}):
        assert information_fractions(unknown, 2, 4) == pytest.approx([2 / 4, 3 / 4, 1.0])


def test_look_bounds_clip_the_fractions_and_one_distinct_look_is_one_look():
    from samtune.search._evidence import look_bounds  # noqa: PLC0415

    assert look_bounds([1.0, 1.0, 1.0], 2.3) == [2.3, 2.3, 2.3]
    assert look_bounds([0.9996, 1.0002], 2.0) == [2.0, 2.0]  # both round to 1
    two = look_bounds([0.5, 1.0], 2.0)
    assert look_bounds([0.5, 1.3], 2.0) == two  # a share above 1 is 1
    assert look_bounds([0.0, 1.0], 2.0)[0] == pytest.approx(two[1] / 0.001**0.5, rel=0.01)  # floor 0.001


def test_the_design_looks_start_where_the_confirmation_first_looked():
    from samtune.search._evidence import design_looks  # noqa: PLC0415

    five = {"test_accuracy": {"per_seed": [0.5] * 5}}
    assert design_looks([{**five, "first_look": 3}, five], 6) == (3, 6)
    assert design_looks([five], None) == (5, 5) and design_looks([five], 4) == (5, 5)


def test_critical_z_and_projected_z_at_the_edges():
    from scipy.stats import t  # noqa: PLC0415

    from samtune.search._evidence import projected_z  # noqa: PLC0415

    assert critical_z(2.0, 0.0) == 2.0  # no df: the normal
    assert critical_z(2.0, 0.5) == round(float(t.isf(NormalDist().cdf(-2.0), 0.5)), 2) > 10
    ev = {"z": 2.0, "z_candidates": 2.0, "df": 4.0, "seeds": [1, 1]}
    assert projected_z(ev, 6) == critical_z(2.0, 4.0)  # one seed: no df to grow, factor 1
    two = {**ev, "seeds": [2, 2]}
    assert projected_z(two, 3) == critical_z(2.0, 8.0)  # df x (3 - 1) / (2 - 1)
    looked = {**two, "look_factors": [1.4, 1.1, 1.0]}  # no first_look: the looks start now
    assert projected_z(looked, 2) == critical_z(2.0, 4.0, 1.4)
    assert projected_z(looked, 3) == critical_z(2.0, 8.0, 1.1)
    assert projected_z({**looked, "first_look": 1}, 2) == critical_z(2.0, 4.0, 1.1)


def test_gain_evidence_names_how_its_z_was_found():
    n = 200
    masks = {"sgd": _masks(n, [100] * 2), "sam": _masks(n, [130] * 2)}
    runner = _Runner(masks)
    base, sam = (_record(v, runner, 2) for v in ("sgd", "sam"))
    assert gain_evidence(sam, base, None)["z_method"] == "single"
    assert gain_evidence(sam, base, None, candidates=2)["z_method"] == "bonferroni"
    assert gain_evidence(sam, base, None, z=2.1)["z_method"] == "given"
    assert gain_evidence(sam, base, None, z=2.1, z_method="max-t")["z_method"] == "max-t"
    from samtune.metrics import Metric  # noqa: PLC0415

    nothing = {"test_accuracy": {"per_seed": []}, "pred": []}  # every seed diverged
    ev = gain_evidence(nothing, {**base, "pred": [[0] * n]}, Metric("balanced_accuracy", 2), [0] * n)
    assert math.isnan(ev["se"]) and math.isnan(ev["bound"])


def test_no_gain_keeps_the_baseline_however_wide_the_noise():
    ev = _ev(0.0, 0.05, 0.05, seeds=3)
    assert decide(ev, 100) == "keep-baseline"
    assert seeds_to_settle(ev) is None and seeds_to_settle({**ev, "se": float("nan")}) is None
    assert seeds_to_settle(_ev(0.02, 0.001, 0.01, seeds=1), most=100) == 2  # from one seed on


def test_seed_level_var_needs_one_mask_per_seed():
    masks = [torch.ones(10).bool(), torch.zeros(10).bool()]
    accs = [0.5, 0.6, 0.7]
    assert seed_level_var(accs, masks) == (pytest.approx(0.01), 0.0)  # two masks for three seeds


def test_fold_runs_whose_runs_differ_get_a_seed_term_and_its_df():
    """Three fold runs whose gains differ far more than their examples explain: the
    cluster-robust variance exceeds var(d) / N and the rest is the seed term, on R - 1 df."""
    import numpy as np  # noqa: PLC0415

    from samtune.search._evidence import fold_gain, satterthwaite  # noqa: PLC0415

    base = [torch.zeros(40, dtype=torch.float64)] * 3
    sam = [torch.tensor([1.0] * 20 + [0.0] * 20), torch.zeros(40, dtype=torch.float64),
           torch.tensor([1.0] * 2 + [0.0] * 38)]
    ev = fold_gain({"fold_runs": sam, "k": 5}, {"fold_runs": base, "k": 5})
    d = np.concatenate([s.numpy() for s in sam])
    n, gain = len(d), d.mean()
    test_var = d.var(ddof=1) / n
    resid = np.array([s.sum().item() - gain * 40 for s in sam])
    cluster = 3 / 2 * (resid**2).sum() / n**2
    assert cluster > test_var
    assert ev["gain"] == pytest.approx(gain) and ev["test_se"] == pytest.approx(test_var**0.5)
    assert ev["seed_se"] == pytest.approx((cluster - test_var) ** 0.5)
    assert ev["se"] == pytest.approx(cluster**0.5) and ev["bound"] == pytest.approx(2 * cluster**0.5)
    assert ev["df"] == pytest.approx(satterthwaite([(test_var, math.inf), (cluster - test_var, 2)]))
    assert ev["k"] == 5 and ev["n_test"] == n == 120


def test_fold_gain_with_nothing_one_run_or_one_example():
    from samtune.search._evidence import fold_gain  # noqa: PLC0415

    run = torch.tensor([1.0, 0.0, 1.0, 1.0])
    none = fold_gain({"fold_runs": [None], "k": 7}, {"fold_runs": [run], "k": 7})
    assert none == {"gain": pytest.approx(float("nan"), nan_ok=True), "se": pytest.approx(float("nan"), nan_ok=True),
                    "bound": pytest.approx(float("nan"), nan_ok=True),
                    "test_se": pytest.approx(float("nan"), nan_ok=True), "seed_se": None, "n_test": 0,
                    "seeds": [0, 0], "design": "folds", "k": 7, "df": math.inf}
    one = fold_gain({"fold_runs": [run], "k": 7}, {"fold_runs": [torch.zeros(4)], "k": 7})
    d = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert one["seed_se"] is None and one["df"] == math.inf and one["seeds"] == [1, 1]
    assert one["se"] == pytest.approx(math.sqrt(d.var().item() / 4))
    single = fold_gain({"fold_runs": [torch.ones(1)]}, {"fold_runs": [torch.zeros(1)]})
    assert single["gain"] == 1.0 and math.isnan(single["se"]) and math.isnan(single["bound"])
    assert math.isnan(single["test_se"]) and single["n_test"] == 1
    two = fold_gain({"fold_runs": [torch.ones(1), torch.zeros(1)]}, {"fold_runs": [torch.zeros(1)] * 2})
    assert two["seed_se"] is not None and math.isfinite(two["se"])  # the runs' spread alone


def test_seeds_to_settle_counts_from_the_next_seed_up_to_the_most():
    ev = _ev(0.014, 0.001, 0.01, seeds=3)  # 1.4 se now; the seed term shrinks with seeds
    need = seeds_to_settle(ev, most=100)
    assert need is not None and need > 4
    assert seeds_to_settle(ev, most=need) == need and seeds_to_settle(ev, most=need - 1) is None
    clear = _ev(0.05, 0.001, 0.01, seeds=3)  # already clear: the next seed is the answer
    assert seeds_to_settle(clear) == 4
    assert seeds_to_settle({**ev, "gain": float("nan")}) is None


def test_information_fractions_without_an_se_or_a_test_term_recorded():
    from samtune.search._evidence import information_fractions  # noqa: PLC0415

    assert information_fractions({"seed_se": 0.01, "seeds": [1, 1]}, 1, 2) == [0.5, 1.0]
    assert information_fractions({"se": 0.01, "seed_se": 0.01, "seeds": [1, 1]}, 1, 2) == pytest.approx([0.5, 1.0])


def test_settle_asks_the_budget_for_two_runs_and_says_what_is_open():
    n = 2000
    base, sam = _flipping(n, 0.80, 0.82, seed=3)  # +2 pp: open at 3 seeds (1.8 se)
    runner = _Runner({"sgd": base, "sam": sam})
    confirmed = [_record(v, runner, 3) for v in ("sgd", "sam")]
    asked, said = [], []
    assert settle(confirmed, runner, max_seeds=6, afford=lambda runs: asked.append(runs) or False,
                  say=said.append) == "budget"
    assert asked == [2] and said == []  # one seed more for the baseline and the best: 2 runs
    ev = gain_evidence(confirmed[1], confirmed[0], None, first_and_most=(3, 4))  # looks at 3, 4
    assert settle(confirmed, runner, max_seeds=4, say=said.append) == "max seeds"
    assert said == [f"  open: {100 * ev['gain']:+.2f} pp against a bound of {100 * ev['bound']:.2f} pp "
                    "after 3 seed(s); seed 4 of at most 4"]


def test_settle_judges_on_the_runners_metric():
    from types import SimpleNamespace

    from samtune.metrics import Metric

    n, gen = 1000, torch.Generator().manual_seed(5)
    y = torch.zeros(n, dtype=torch.long)
    y[:100] = 1  # a rare class: balanced accuracy weighs its recall as much as the rest

    def preds(recall: int, wrong: float) -> list[torch.Tensor]:
        out = []
        for _ in range(6):
            p = (torch.rand(n, generator=gen) < wrong).long()  # the common class, some wrong
            p[:100] = 0
            p[:recall] = 1
            out.append(p)
        return out

    # +1.7 pp of accuracy (open at 3 seeds: the bound is 2.7), +47 pp of balanced accuracy
    masks = {"sgd": preds(30, 0.05), "sam": preds(80, 0.09)}

    class Runner(_Runner):
        def add_seed(self, rec):
            p = self.masks[rec["config"]["variant"]][len(rec["test_accuracy"]["per_seed"])]
            rec.setdefault("pred", []).append(p)
            rec["correct"].append(p == y)
            for key, score in (("test_accuracy", (p == y).double().mean().item()),
                               ("test_metric", self.metric.score(y, p) if self.metric else None)):
                scores = rec.setdefault(key, {"per_seed": []})
                scores["per_seed"].append(score)
                scores["mean"] = sum(scores["per_seed"]) / len(scores["per_seed"]) if score is not None else None
            self.calls.append(rec["config"]["variant"])

    for metric, want in ((None, "max seeds"), (Metric("balanced_accuracy", 2), "decided")):
        runner = Runner(masks)
        runner.metric, runner.data = metric, SimpleNamespace(y_test=y)
        confirmed = [_record(v, runner, 3) for v in ("sgd", "sam")]
        assert settle(confirmed, runner, max_seeds=4) == want
