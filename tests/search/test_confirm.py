"""Which configurations confirmation retrains: an in-memory study driven through ask / tell."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from samtune import SAMConfig
from samtune.search._confirm import choose_baseline, other_baseline, pick_candidates

optuna.logging.set_verbosity(optuna.logging.WARNING)


def cfg(variant: str, rho: float = 0.05, lr: float = 0.05, **kw) -> SAMConfig:
    return SAMConfig(variant=variant, rho=0.0 if variant == "sgd" else rho,
                     base_kwargs={"lr": lr}, **kw)


def study_of(trials) -> optuna.Study:
    """trials: (config or None, value or a TrialState)."""
    study = optuna.create_study(direction="maximize")
    for config, outcome in trials:
        t = study.ask()
        if config is not None:
            t.set_user_attr("config", config.to_dict())
        if isinstance(outcome, TrialState):
            study.tell(t, state=outcome)
        else:
            study.tell(t, outcome)
    return study


def picked(study, top_k=2, fallback=None):
    out = pick_candidates(study, top_k, fallback or {"lr": 0.07})
    return [(c.to_dict(), None if t is None else t.number) for c, t in out]


def test_the_top_k_distinct_completed_configurations_and_the_best_baseline():
    study = study_of([
        (cfg("sgd", lr=0.1), 0.70),            # 0: a baseline, not the best one
        (cfg("sam", rho=0.1), 0.90),           # 1: best
        (cfg("asam", rho=1.0), 0.85),          # 2: third distinct
        (cfg("sam", rho=0.1), 0.88),           # 3: same configuration as 1: not twice
        (cfg("gsam"), 0.87),                   # 4: second distinct
        (cfg("sgd", lr=0.2), 0.75),            # 5: the best baseline
        (cfg("obf"), TrialState.PRUNED),       # pruned and failed trials never count
        (cfg("randsam"), TrialState.FAIL),
        (None, 0.99),                          # a completed trial without a config: skipped
        (cfg("sam", rho=0.3), 0.10),           # worst
    ])
    got = picked(study, top_k=2)
    trials = study.get_trials()
    assert [n for _, n in got] == [1, 4, 5, 0]  # and the baseline at the next lr tried
    assert [c for c, _ in got] == [trials[n].user_attrs["config"] for n in (1, 4, 5, 0)]


def test_top_k_three_takes_the_next_distinct_configuration():
    study = study_of([
        (cfg("sam", rho=0.1), 0.90), (cfg("sam", rho=0.1), 0.89), (cfg("gsam"), 0.87),
        (cfg("asam", rho=1.0), 0.85), (cfg("obf"), 0.80), (cfg("sgd"), 0.60),
    ])
    assert [n for _, n in picked(study, top_k=3)] == [0, 2, 3, 5]


def test_top_k_counts_sam_family_configurations_only_the_best_baseline_comes_besides():
    """Baselines at the top never take one of the k places (issue: --top-k means k SAM-family
    configurations besides the baseline)."""
    study = study_of([
        (cfg("sgd", lr=0.2), 0.95), (cfg("sam"), 0.90), (cfg("sgd", lr=0.1), 0.93),
        (cfg("asam", rho=1.0), 0.80),
    ])
    got = picked(study, top_k=2)
    assert [n for _, n in got] == [1, 3, 0, 2]  # the best baseline, then the one at lr / 2
    assert sum(c["variant"] == "sgd" for c, _ in got) == 2


def test_without_a_completed_baseline_the_best_trials_base_optimizer_is_the_fallback():
    study = study_of([
        (cfg("sam", lr=0.25), 0.80), (cfg("asam", rho=1.0, lr=0.3), 0.90),
        (cfg("sgd", lr=0.5), TrialState.PRUNED),
    ])
    got = pick_candidates(study, 1, {"lr": 0.07})
    assert [t.number if t else None for _, t in got] == [1, None]
    fallback = got[-1][0]
    assert fallback.variant == "sgd" and fallback.rho == 0.0
    assert fallback.base_kwargs == SAMConfig.from_dict(study.trials[1].user_attrs["config"]).base_kwargs
    assert fallback.lr == 0.3


def test_an_adamw_best_trial_gives_an_adamw_fallback():
    study = study_of([(SAMConfig(variant="sam", base="adamw", base_kwargs={"lr": 3e-3}), 0.8)])
    fallback = pick_candidates(study, 2, {"lr": 0.07})[-1][0]
    assert (fallback.variant, fallback.base, fallback.lr) == ("sgd", "adamw", 3e-3)


def test_with_no_completed_trial_the_fallback_uses_the_given_base_settings():
    study = study_of([(cfg("sam"), TrialState.FAIL)])
    got = pick_candidates(study, 2, {"lr": 0.07, "momentum": 0.5})
    assert len(got) == 1
    config, trial = got[0]
    assert trial is None
    assert (config.variant, config.base, config.lr) == ("sgd", "sgd", 0.07)
    assert config.base_kwargs["momentum"] == 0.5


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_never_more_than_top_k_plus_the_baseline(top_k):
    study = study_of([(cfg("sam", rho=0.01 * (i + 1)), 0.5 + 0.01 * i) for i in range(6)]
                     + [(cfg("sgd"), 0.4)])
    got = picked(study, top_k=top_k)
    assert len(got) == top_k + 1
    assert [n for _, n in got[:-1]] == list(range(5, 5 - top_k, -1))
    assert got[-1][1] == 6


def study_with_losses(trials) -> optuna.Study:
    """trials: (config, value, final validation loss or None)."""
    study = optuna.create_study(direction="maximize")
    for config, value, loss in trials:
        t = study.ask()
        t.set_user_attr("config", config.to_dict())
        if loss is not None:
            t.set_user_attr("final_val_loss", loss)
        study.tell(t, value)
    return study


def test_places_alternate_the_best_by_value_and_the_best_by_validation_loss():
    study = study_with_losses([
        (cfg("sam", rho=0.1), 0.90, 1.0),   # 0: best value
        (cfg("gsam"), 0.88, 0.5),           # 1: second lowest loss
        (cfg("asam", rho=1.0), 0.89, 0.9),  # 2: second value
        (cfg("obf"), 0.70, 0.4),            # 3: lowest loss, worst value
        (cfg("sgd"), 0.60, 0.3),            # 4: a baseline's loss never places a SAM trial
    ])
    assert [n for _, n in picked(study, top_k=1)] == [0, 4]
    assert [n for _, n in picked(study, top_k=2)] == [0, 3, 4]
    assert [n for _, n in picked(study, top_k=3)] == [0, 3, 2, 4]
    assert [n for _, n in picked(study, top_k=4)] == [0, 3, 2, 1, 4]


def test_a_configuration_counts_once_and_a_trial_without_a_loss_is_placed_by_value():
    study = study_with_losses([
        (cfg("sam", rho=0.1), 0.90, 0.3),   # 0: best value
        (cfg("sam", rho=0.1), 0.80, 0.1),   # 1: the same configuration: counted once, as trial 0
        (cfg("asam", rho=1.0), 0.85, None), # 2: no loss recorded: placed by value only
        (cfg("gsam"), 0.70, 0.5),
        (cfg("obf"), 0.75, 0.2),            # 4: the lowest loss of the distinct configurations
        (cfg("sgd"), 0.60, None),
    ])
    assert [n for _, n in picked(study, top_k=2)] == [0, 4, 5]
    assert [n for _, n in picked(study, top_k=3)] == [0, 4, 2, 5]
    assert [n for _, n in picked(study, top_k=4)] == [0, 4, 2, 3, 5]


def test_when_value_and_loss_agree_the_next_place_is_the_second_by_value():
    study = study_with_losses([
        (cfg("sam", rho=0.1), 0.90, 0.2), (cfg("gsam"), 0.70, 0.3), (cfg("asam", rho=1.0), 0.85, 0.9),
        (cfg("sgd"), 0.60, None),
    ])
    assert [n for _, n in picked(study, top_k=2)] == [0, 2, 3]
    assert [n for _, n in picked(study, top_k=3)] == [0, 2, 1, 3]


def test_the_best_trial_at_another_lr_is_confirmed_too():
    study = study_of([
        (cfg("sgd", lr=0.02), 0.70),            # 0: the baseline
        (cfg("sam", rho=0.1, lr=0.02), 0.90),   # 1: best
        (cfg("asam", rho=1.0, lr=0.02), 0.88),  # 2: second
        (cfg("obf", lr=0.028), 0.87),           # 3: 1.4x the candidates' lr: the same lr
        (cfg("sam", rho=0.2, lr=0.04), 0.85),   # 4: 2x: another lr, the best of those
        (cfg("gsam", lr=0.01), 0.84),           # 5: another lr too, but worse
    ])
    assert [n for _, n in picked(study, top_k=2)] == [1, 2, 4, 0]
    # with 3 (lr 0.028) a candidate, 4 (lr 0.04) lies within 1.5x of it: 5 is the other lr
    assert [n for _, n in picked(study, top_k=3)] == [1, 2, 3, 5, 0]
    # every SAM-family trial at the candidates' lr: nothing is added
    same = study_of([(cfg("sgd", lr=0.02), 0.70), (cfg("sam", lr=0.02), 0.9),
                     (cfg("asam", rho=1.0, lr=0.025), 0.8), (cfg("obf", lr=0.016), 0.7)])
    assert [n for _, n in picked(same, top_k=2)] == [1, 2, 0]


def _bases(study):
    return sorted((t for t in study.get_trials(states=(TrialState.COMPLETE,))
                   if t.user_attrs["config"]["variant"] == "sgd"), key=lambda t: -t.value)


def test_the_other_baseline_is_the_better_of_the_nearest_lrs_tried_on_either_side():
    study = study_of([
        (cfg("sgd", lr=0.01), 0.79),   # 0: below, but not the nearest below
        (cfg("sgd", lr=0.04), 0.70),   # 1: the nearest below
        (cfg("sgd", lr=0.1), 0.80),    # 2: the best
        (cfg("sgd", lr=0.12), 0.78),   # 3: 1.2x away: the same lr to a validation seed
        (cfg("sgd", lr=0.25), 0.75),   # 4: the nearest above, better than 1
        (cfg("sgd", lr=1.0), 0.79),    # 5: above, not the nearest
        (cfg("sam", lr=0.2), 0.95),    # SAM-family trials are no baselines
    ])
    assert other_baseline(_bases(study)).number == 4
    tie = study_of([(cfg("sgd", lr=0.1), 0.8), (cfg("sgd", lr=0.02), 0.7), (cfg("sgd", lr=0.3), 0.7)])
    assert other_baseline(_bases(tie)).number == 2  # a tie: the nearer (3x against 5x)
    lonely = study_of([(cfg("sgd", lr=0.1), 0.8), (cfg("sgd", lr=0.11), 0.9)])
    assert other_baseline(_bases(lonely)) is None and other_baseline([]) is None


def rec(variant, rights, lr=0.1, n=1000, skip=0):
    """A confirmation record: per seed, ``rights[s]`` of ``n`` test examples right, those
    from ``skip`` on."""
    accs = [r / n for r in rights]
    mean = sum(accs) / len(accs)
    correct = [(torch.arange(n) >= skip) & (torch.arange(n) < skip + r) for r in rights]
    return {"config": cfg(variant, lr=lr).to_dict(), "correct": correct,
            "test_metric": {"mean": mean, "per_seed": accs}, "test_accuracy": {"mean": mean, "per_seed": accs}}


def test_the_tuned_baseline_is_kept_unless_another_beats_it_beyond_the_noise():
    sam, tuned = rec("sam", [800] * 3), rec("sgd", [700, 702, 698], lr=0.1)
    near = rec("sgd", [705, 703, 707], lr=0.2, skip=20)  # +0.5 pp (25 gained, 20 lost): noise
    kept, aside = choose_baseline([sam, tuned, near])
    assert kept == [sam, tuned] and aside == [near]
    far = rec("sgd", [760, 758, 762], lr=0.2)  # +6 pp: beyond it
    kept, aside = choose_baseline([sam, tuned, far])
    assert kept == [sam, far] and aside == [tuned]
    worse = rec("sgd", [600] * 3, lr=0.05)
    assert choose_baseline([tuned, sam, worse]) == ([tuned, sam], [worse])
    assert choose_baseline([sam, tuned]) == ([sam, tuned], [])


def test_the_baseline_is_chosen_on_the_searchs_metric():
    """Balanced accuracy prefers the baseline that finds the rare class; accuracy does not."""
    from samtune.metrics import Metric

    y = torch.tensor([0] * 900 + [1] * 100)
    majority = torch.zeros(1000, dtype=torch.long)  # accuracy 0.90, balanced 0.50
    rare = y.clone()
    rare[:150] = 1  # accuracy 0.85, balanced 0.92

    def with_pred(variant, pred, lr):
        r = rec(variant, [int((pred == y).sum())] * 3, lr=lr)
        r["correct"] = [pred == y] * 3
        r["pred"] = [pred] * 3
        score = Metric("balanced_accuracy", 2).score(y, pred)
        r["test_metric"] = {"mean": score, "per_seed": [score] * 3}
        return r

    sam, tuned, other = rec("sam", [800] * 3), with_pred("sgd", majority, 0.1), with_pred("sgd", rare, 0.25)
    assert choose_baseline([sam, tuned, other]) == ([sam, tuned], [other])
    assert choose_baseline([sam, tuned, other], Metric("balanced_accuracy", 2), y) == ([sam, other], [tuned])
