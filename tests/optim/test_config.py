from __future__ import annotations

import json

import pytest
import yaml

from samtune import ConfigError, SAMConfig, build_optimizer, list_variants
from samtune.optim import get_variant


def test_registry_lists_every_variant_baseline_first():
    names = list_variants()
    assert names[0] == "sgd"
    assert set(names) == {"sgd", "sam", "asam", "gsam", "obf", "randsam", "gsam-obf", "asam-obf"}
    assert not get_variant("sgd").perturbs and get_variant("asam-obf").adaptive


@pytest.mark.parametrize("variant", list_variants())
def test_config_round_trips_through_json_and_yaml(variant):
    cfg = SAMConfig(variant=variant, rho=0.2, schedule="cosine", schedule_kwargs={"rho_min": 0.01},
                    m=8, base="adamw", base_kwargs={"lr": 3e-4})
    assert SAMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert SAMConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


def test_config_fills_defaults_and_builds():
    cfg = SAMConfig(variant="gsam")
    assert cfg.base_kwargs["lr"] == 0.05 and cfg.variant_kwargs == {"alpha": 0.1}
    opt = build_optimizer(__import__("torch").nn.Linear(2, 2), cfg.to_dict())
    assert opt.param_groups[0]["rho"] == 0.05 and opt.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"variant": "nope"}, "unknown variant 'nope'"),
        ({"rho": -0.1}, "rho=-0.1"),
        ({"rho": 50.0}, "rho=50.0"),
        ({"variant": "asam", "variant_kwargs": {"eta": 0.0}}, "eta must be in (0.0, 1.0]"),
        ({"variant": "gsam", "variant_kwargs": {"alpha": 2.0}}, "alpha=2.0"),
        ({"variant": "obf", "variant_kwargs": {"gamma": -1}}, "gamma=-1"),
        ({"variant": "obf", "variant_kwargs": {"prob": "tanh"}}, "sigmoid, softmax"),
        ({"variant": "obf", "variant_kwargs": {"C": 1}}, "C=1"),
        ({"variant": "sam", "variant_kwargs": {"eta": 0.1}}, "takes no parameter"),
        ({"m": 0}, "m=0"),
        ({"base": "lbfgs"}, "unknown base optimizer 'lbfgs'"),
        ({"base_kwargs": {"lr": -1}}, "lr=-1"),
        ({"base_kwargs": {"lr": 0.1, "betas": (0.9, 0.9)}}, "takes no argument"),
        ({"base_kwargs": {"momentum": 1.5}}, "momentum=1.5"),
        ({"schedule": "step"}, "unknown rho schedule 'step'"),
        ({"schedule_kwargs": {"rho_min": -1}}, "rho_min=-1"),
        ({"max_grad_norm": 0}, "max_grad_norm=0"),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(kwargs, needle):
    with pytest.raises(ConfigError) as info:
        SAMConfig(**kwargs)
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ConfigError, match="unknown SAMConfig field"):
        SAMConfig.from_dict({"variant": "sam", "rhoo": 0.1})


def test_the_description_names_the_variants_own_hyperparameters_off_their_defaults():
    asam = SAMConfig(variant="asam", rho=1.0, variant_kwargs={"eta": 0.0111}, base_kwargs={"lr": 0.2})
    assert asam.describe() == "asam rho=1 eta=0.0111 schedule=constant m=batch (sgd, lr=0.2)"
    other = SAMConfig(variant="asam", rho=1.0, variant_kwargs={"eta": 0.0125}, base_kwargs={"lr": 0.2})
    assert other.describe() != asam.describe()  # two configurations, two descriptions
    assert SAMConfig(variant="asam", rho=1.0).describe() == "asam rho=1 schedule=constant m=batch (sgd, lr=0.05)"
    both = SAMConfig(variant="gsam-obf", rho=0.05, m=8, variant_kwargs={"alpha": 0.3, "gamma": 0.01},
                     perturb="stochastic", perturb_kwargs={"p": 0.5})
    assert both.describe() == ("gsam-obf rho=0.05 alpha=0.3 gamma=0.01 schedule=constant m=8 "
                               "perturb=stochastic(p=0.5) (sgd, lr=0.05)")
