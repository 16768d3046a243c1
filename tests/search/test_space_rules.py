"""The search space's rules: defaults, ranges and their messages, sampling (distributions and
conditional parameters), warm starts restricted to the space, the digest."""

from __future__ import annotations

import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from samtune.errors import ConfigError
from samtune.search import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sample(space: SearchSpace, fixed: dict):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(fixed)
    trial = study.ask()
    return space.sample(trial), trial


def test_defaults():
    s = SearchSpace.from_dict({}, where="mine.yaml")
    assert s.name == "mine.yaml" and SearchSpace.from_dict({"name": "x"}).name == "x"
    assert SearchSpace.from_dict({}).name == "space"
    assert s.lr == 0.05 and s.base == "sgd" and s.base_kwargs == {} and s.m == [None]
    assert s.rho == {"default": {"low": 0.01, "high": 0.5, "log": True}}
    assert s.schedule == ["constant"] and s.variant_kwargs == {} and s.warm_start == []
    assert SearchSpace.from_dict({"m": 8, "schedule": "cosine"}).m == [8]
    assert SearchSpace.from_dict({"schedule": "cosine"}).schedule == ["cosine"]
    assert SearchSpace.from_dict({"lr": {"low": 0.01, "high": 0.1}}).lr == {
        "low": 0.01, "high": 0.1, "log": False}


@pytest.mark.parametrize("data, message", [
    ({"lr": {"low": 0.1}}, "s: lr must be a mapping with low and high (and optional log), but got {'low': 0.1}."),
    ({"lr": {"low": "a", "high": 1}}, "s: lr.low must be a number, but got 'a'."),
    ({"lr": {"low": 0.1, "high": True}}, "s: lr.high must be a number, but got True."),
    ({"lr": {"low": -0.1, "high": 1}}, "s: lr.low must be >= 0.0, but got -0.1."),
    ({"lr": {"low": 0.1, "high": 10.5}}, "s: lr.high must be <= 10.0, but got 10.5."),
    ({"lr": {"low": 0.2, "high": 0.1}}, "s: lr: low (0.2) must not exceed high (0.1)."),
    ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "s: lr: a log range needs low > 0, but got low=0.0."),
    ([], "s must be a YAML mapping, but got list."),
    ({"variants": []}, "s: variants must be a non-empty list of sgd, sam, asam, gsam, obf, randsam, gsam-obf, asam-obf."),
    ({"variants": "sam"}, "s: variants must be a non-empty list of sgd, sam, asam, gsam, obf, randsam, gsam-obf, asam-obf."),
    ({"rho": {"sam": {"low": 0.1, "high": 0.2}}}, "s: rho needs a 'default' range (and optional per-variant ranges)."),
    ({"rho": [0.1]}, "s: rho needs a 'default' range (and optional per-variant ranges)."),
    ({"schedule": ["warp"]}, "s: unknown schedule 'warp'; choose among constant, cosine, linear, lr_prop."),
    ({"m": [0]}, "s: m values must be null or whole numbers >= 1, but got m=0."),
    ({"m": [True]}, "s: m values must be null or whole numbers >= 1, but got m=True."),
    ({"variant_kwargs": {"eta": [1]}}, "s: variant_kwargs: eta must be a number, but got eta=[1]."),
    ({"variant_kwargs": {"eta": {"low": 1}}}, "s: variant_kwargs.eta must be a mapping with low and high (and optional log), but got {'low': 1}."),
    ({"bogus": 1}, "s: unknown key(s) ['bogus']; accepted: base, base_kwargs, lr, m, name, perturb, rho, schedule, variant_kwargs, variants, warm_start."),
])
def test_bad_spaces_and_their_messages(data, message):
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_dict(data, where="s")
    assert str(err.value) == message


@pytest.mark.parametrize("lr", [20.0, "abc", [0.1], -1.0])
def test_a_fixed_lr_outside_the_accepted_values_is_refused(lr):
    with pytest.raises(ConfigError, match="lr"):
        SearchSpace.from_dict({"variants": ["sgd"], "lr": lr}, where="s")


def test_range_ends_are_inclusive_and_m_one_is_allowed():
    s = SearchSpace.from_dict({"lr": {"low": 0.0, "high": 10.0}, "m": [1, None],
                               "rho": {"default": {"low": 0.1, "high": 0.1}}})
    assert s.lr == {"low": 0.0, "high": 10.0, "log": False} and s.m == [1, None]


def test_sampling_uses_the_declared_distributions():
    s = SearchSpace.from_dict({
        "variants": ["sgd", "gsam", "asam"], "lr": {"low": 0.01, "high": 0.3, "log": True},
        "rho": {"default": {"low": 0.01, "high": 0.5, "log": True}, "asam": {"low": 0.5, "high": 2.0}},
        "schedule": ["constant", "cosine"], "m": [None, 8],
        "variant_kwargs": {"alpha": {"low": 0.01, "high": 0.5, "log": True}, "eta": 0.05},
        "base_kwargs": {"momentum": 0.5},
    })
    cfg, trial = _sample(s, {"variant": "gsam", "lr": 0.1, "rho": 0.2, "schedule": "cosine",
                             "m": 8, "alpha": 0.3})
    d = trial.distributions
    assert d["lr"] == FloatDistribution(0.01, 0.3, log=True)
    assert d["rho"] == FloatDistribution(0.01, 0.5, log=True)
    assert d["alpha"] == FloatDistribution(0.01, 0.5, log=True)
    assert d["variant"] == CategoricalDistribution(["sgd", "gsam", "asam"])
    assert d["m"] == CategoricalDistribution([None, 8])
    assert (cfg.variant, cfg.lr, cfg.rho, cfg.schedule, cfg.m) == ("gsam", 0.1, 0.2, "cosine", 8)
    assert cfg.variant_kwargs == {"alpha": 0.3} and cfg.base_kwargs["momentum"] == 0.5
    cfg, trial = _sample(s, {"variant": "asam", "lr": 0.1, "rho": 1.5, "schedule": "constant", "m": None})
    assert trial.distributions["rho"] == FloatDistribution(0.5, 2.0, log=False)
    assert cfg.variant_kwargs == {"eta": 0.05} and "alpha" not in trial.params
    cfg, trial = _sample(s, {"variant": "sgd", "lr": 0.2})
    assert set(trial.params) == {"variant", "lr"} and cfg.rho == 0.0


def test_a_fixed_lr_is_not_a_parameter():
    s = SearchSpace.from_dict({"variants": ["sam"], "lr": 0.07})
    cfg, trial = _sample(s, {"variant": "sam", "rho": 0.1, "schedule": "constant", "m": None})
    assert cfg.lr == 0.07 and "lr" not in trial.params


def test_warm_starts_keep_only_what_the_space_searches():
    s = SearchSpace.from_dict({
        "variants": ["sgd", "sam"], "lr": {"low": 0.01, "high": 0.1},
        "rho": {"default": {"low": 0.01, "high": 0.2}}, "m": [None, 16], "schedule": ["constant"],
        "warm_start": [{"variant": "sgd", "lr": 0.05}, {"variant": "sgd", "lr": 0.5},
                       {"variant": "sam", "rho": 0.05, "lr": 0.1, "m": 16},
                       {"variant": "sam", "rho": 0.9, "lr": 0.01, "m": 32, "schedule": "cosine"}],
    })
    assert s.warm_start_params() == [
        {"variant": "sgd", "lr": 0.05}, {"variant": "sgd"},
        {"variant": "sam", "lr": 0.1, "rho": 0.05, "schedule": "constant", "m": 16},
        {"variant": "sam", "lr": 0.01},
    ]
    fixed = SearchSpace.from_dict({"variants": ["sam"], "lr": 0.05,
                                   "warm_start": [{"variant": "sam", "lr": 0.05, "rho": 0.01}]})
    assert fixed.warm_start_params() == [{"variant": "sam", "rho": 0.01, "schedule": "constant", "m": None}]


def test_warm_starts_take_the_variants_defaults_for_what_the_space_searches():
    s = SearchSpace.from_dict({
        "variants": ["asam", "gsam-obf"], "lr": 0.05,
        "variant_kwargs": {"eta": {"low": 0.001, "high": 0.1}, "alpha": {"low": 0.01, "high": 1.0},
                           "gamma": {"low": 1e-4, "high": 1.0}},
        "warm_start": [{"variant": "asam", "rho": 1.0}, {"variant": "asam", "rho": 1.0, "eta": 0.05},
                       {"variant": "asam", "rho": 1.0, "eta": 0.5}, {"variant": "gsam-obf", "rho": 0.05}],
    })
    # asam's eta 0.01; the entry's own value; clipped into the range; gsam's alpha 0.1 and
    # OBF's gamma 1e-12 moved up to the range's floor
    assert [{k: v for k, v in p.items() if k in ("eta", "alpha", "gamma")} for p in s.warm_start_params()] == [
        {"eta": 0.01}, {"eta": 0.05}, {"eta": 0.1}, {"alpha": 0.1, "gamma": 1e-4}]
    fixed = SearchSpace.from_dict({"variants": ["asam"], "variant_kwargs": {"eta": 0.02},
                                   "warm_start": [{"variant": "asam", "rho": 1.0}]})
    assert "eta" not in fixed.warm_start_params()[0]  # not searched: the space's value applies


@pytest.mark.parametrize("entry, message", [
    ({"variant": "sam", "eta": 0.01}, "warm_start[0]: variant 'sam' takes no parameter(s) ['eta']"),
    ({"variant": "asam", "eta": 0}, "warm_start[0]: eta must be in (0.0, 1.0]"),
])
def test_a_warm_starts_hyperparameter_is_checked_when_the_space_loads(entry, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SearchSpace.from_dict({"variants": ["sam", "asam"], "warm_start": [entry]}, where="space.yaml")


def test_the_digest_ignores_key_order_and_sees_every_value():
    a = SearchSpace.from_dict({"variants": ["sgd", "sam"], "base_kwargs": {"momentum": 0.9, "nesterov": True}})
    b = SearchSpace.from_dict({"base_kwargs": {"nesterov": True, "momentum": 0.9}, "variants": ["sgd", "sam"]})
    assert a.digest() == b.digest()
    assert a.digest() != SearchSpace.from_dict({"variants": ["sgd", "sam"],
                                                "base_kwargs": {"momentum": 0.8, "nesterov": True}}).digest()


def test_m_equal_to_the_batch_is_the_whole_batch():
    s = SearchSpace.from_dict({"m": [None, 16, 32, 8]})
    assert s.with_batch_size(16).m == [None, 8]


def test_loading_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^search space 'nope' is neither a file nor a preset; presets: "):
        SearchSpace.load("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [sgd\n")
    with pytest.raises(ConfigError) as err:
        SearchSpace.load(bad)
    assert str(err.value).startswith(f"cannot read search space '{bad}': while parsing a flow sequence")
    bad.write_text("variants: [sgd, samm]\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: unknown variant 'samm'"):
        SearchSpace.load(bad)
    with pytest.raises(ConfigError, match=r"^s: base optimizer 'sgd' takes no argument"):
        SearchSpace.from_dict({"base_kwargs": {"bogus": 1}}, where="s")
