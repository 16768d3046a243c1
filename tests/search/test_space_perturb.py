"""The search space's ``perturb`` dimension: which steps perturb, searched for the SAM family."""

from __future__ import annotations

import optuna
import pytest

from samtune.errors import ConfigError
from samtune.search._space import SearchSpace, parse_perturb

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = {"variants": ["sgd", "sam"], "lr": 0.05, "m": [None], "schedule": ["constant"]}


def test_labels_parse_into_a_perturbation_schedule_and_bad_ones_are_one_line_errors():
    assert parse_perturb("always") == ("always", {})
    assert parse_perturb("stochastic:p=0.25,seed=3") == ("stochastic", {"p": 0.25, "seed": 3})
    for bad, match in (("sometimes", "unknown perturbation schedule"),
                       ("stochastic:p", "key=number"), ("stochastic:p=x", "key=number"),
                       ("stochastic:p=2", "p must be in"), ("late:every=2", "unknown perturb_kwargs")):
        with pytest.raises(ConfigError, match=match) as err:
            SearchSpace.from_dict({**BASE, "perturb": ["always", bad]}, where="s.yaml")
        assert "\n" not in str(err.value) and str(err.value).startswith("s.yaml: perturb")
    with pytest.raises(ConfigError, match="at least one choice"):
        SearchSpace.from_dict({**BASE, "perturb": []})


def test_family_trials_sample_it_and_the_baseline_never_does():
    space = SearchSpace.from_dict({**BASE, "perturb": ["always", "periodic:every=4"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = space.sample(trial)
        study.tell(trial, 0.0)
        if config.variant == "sgd":
            assert "perturb" not in trial.params and config.perturb == "always"
        else:
            assert trial.params["perturb"] in space.perturb
            seen.add((config.perturb, tuple(config.perturb_kwargs.items())))
    assert seen == {("always", ()), ("periodic", (("every", 4),))}


def test_warm_starts_perturb_every_step_unless_they_say_otherwise():
    space = SearchSpace.from_dict({**BASE, "perturb": ["always", "late:start=0.5"],
                                   "warm_start": [{"variant": "sam", "rho": 0.05},
                                                  {"variant": "sam", "perturb": "late:start=0.5"}]})
    assert [p.get("perturb") for p in space.warm_start_params()] == ["always", "late:start=0.5"]


def test_a_space_with_only_always_keeps_its_old_digest():
    plain = SearchSpace.from_dict(BASE)
    assert "perturb" not in plain.to_dict()
    assert plain.digest() == SearchSpace.from_dict({**BASE, "perturb": ["always"]}).digest()
    assert plain.digest() != SearchSpace.from_dict({**BASE, "perturb": ["always", "late"]}).digest()
    assert SearchSpace.load("default").perturb == ["always"]  # opt-in: see studies/default.yaml
