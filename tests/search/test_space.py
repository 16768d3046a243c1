from __future__ import annotations

import optuna
import pytest
import yaml

from samtune.errors import ConfigError
from samtune.search import SearchSpace, list_presets


@pytest.mark.parametrize("name", ["default", "quick", "paper"])
def test_presets_load_and_sample_valid_configs(name):
    assert name in list_presets()
    space = SearchSpace.load(name).with_batch_size(64)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        config = space.sample(trial)
        assert config.variant in space.variants
        if config.perturbs:
            r = space.rho_range(config.variant)
            assert r["low"] <= config.rho <= r["high"]
            assert config.m is None or 64 % config.m == 0
            assert set(trial.params) >= {"variant", "rho", "schedule", "m"}
        else:
            assert "rho" not in trial.params
        study.tell(trial, 0.5)


def test_asam_range_is_about_ten_times_sams():
    space = SearchSpace.load("default")
    assert space.rho_range("asam")["high"] >= 5 * space.rho_range("sam")["high"]


def test_m_at_least_the_batch_means_whole_batch():
    assert SearchSpace.load("default").with_batch_size(16).m == [None, 8]


@pytest.mark.parametrize("data, needle", [
    ({"variants": ["sam", "nope"]}, "unknown variant 'nope'"),
    ({"rho": {"default": {"low": -0.1, "high": 0.5}}}, "rho.default.low must be >= 0.0"),
    ({"rho": {"default": {"low": 0.5, "high": 0.1}}}, "must not exceed"),
    ({"rho": {"default": {"low": 0.01, "high": 0.5}, "asam": {"low": 1, "high": 2}}, "variants": ["sam"]}, "not among the variants"),
    ({"schedule": ["step"]}, "unknown schedule 'step'"),
    ({"m": [0]}, "m=0"),
    ({"lr": {"low": 0, "high": 1, "log": True}}, "log range needs low > 0"),
    ({"variant_kwargs": {"eta": -1.0}}, "eta"),
    ({"variant_kwargs": {"beta": 1.0}}, "not searchable"),
    ({"colour": "red"}, "unknown key"),
    ({"base": "rmsprop"}, "unknown base optimizer"),
    ({"warm_start": [{"variant": "gsam"}], "variants": ["sgd"]}, "warm_start[0]"),
])
def test_bad_space_files_fail_with_the_file_and_the_problem(tmp_path, data, needle):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        SearchSpace.load(path)
    assert needle in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_m_not_dividing_the_batch_is_refused():
    space = SearchSpace.from_dict({"m": [None, 24]})
    with pytest.raises(ConfigError, match="m=24 does not divide the batch size 64"):
        space.with_batch_size(64)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="default, paper, quick"):
        SearchSpace.load("nonexistent")


def test_digest_changes_with_the_space():
    a = SearchSpace.load("default")
    assert a.digest() == SearchSpace.load("default").digest()
    assert a.digest() != a.fix_lr(0.1).digest()
