"""The variants registry and the checks of variant hyperparameters: boundaries and messages."""

from __future__ import annotations

import math

import pytest

from samtune import ConfigError
from samtune.optim import VariantSpec, get_variant, list_variants, register_variant
from samtune.optim._variants import _REGISTRY, check_param, check_rho


@pytest.fixture
def scratch_registry():
    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)


def test_unknown_parameters_name_what_the_variant_accepts():
    with pytest.raises(ConfigError, match=r"variant 'sam' takes no parameter\(s\) \['eta'\]; accepted: none\.$"):
        get_variant("sam").resolve_kwargs({"eta": 0.1})
    with pytest.raises(ConfigError, match=r"accepted: eta, gamma, C, prob\.$"):
        get_variant("asam-obf").resolve_kwargs({"alpha": 0.1})
    assert get_variant("gsam-obf").resolve_kwargs(None) == {
        "alpha": 0.1, "gamma": 1e-12, "C": None, "prob": "sigmoid"}


@pytest.mark.parametrize("value", [True, "0.1", None])
def test_a_parameter_that_is_not_a_number_is_refused(value):
    with pytest.raises(ConfigError, match=rf"^eta must be a number, but got eta={value!r}\.$"):
        check_param("eta", value)


@pytest.mark.parametrize("name, value, ok", [
    ("eta", 0.0, False), ("eta", 1e-9, True), ("eta", 1.0, True), ("eta", 1.0 + 1e-9, False),
    ("alpha", 0.0, True), ("alpha", -1e-9, False), ("alpha", 1.0, True), ("alpha", 1.01, False),
    ("gamma", 10.0, True), ("gamma", 10.5, False), ("C", 1.0, False), ("C", 1e9, True),
    ("eta", math.nan, False),
])
def test_parameter_ranges_and_their_ends(name, value, ok):
    if ok:
        assert check_param(name, value) == value and isinstance(check_param(name, value), float)
    else:
        with pytest.raises(ConfigError, match=rf"^{name} must be in "):
            check_param(name, value)


@pytest.mark.parametrize("name, value, shown", [
    ("eta", 0.0, "(0.0, 1.0]"), ("alpha", 2.0, "[0.0, 1.0]"), ("C", 0.5, "(1.0, inf)"),
])
def test_range_messages_show_open_and_closed_ends(name, value, shown):
    with pytest.raises(ConfigError) as err:
        check_param(name, value)
    assert str(err.value) == f"{name} must be in {shown}, but got {name}={value!r}."


def test_choices_and_a_none_default():
    assert check_param("C", None) is None
    assert check_param("prob", "softmax") == "softmax"
    with pytest.raises(ConfigError, match=r"^prob must be one of sigmoid, softmax, but got prob='tanh'\.$"):
        check_param("prob", "tanh")


@pytest.mark.parametrize("rho, ok", [(0, True), (0.0, True), (10.0, True), (10.01, False),
                                     (-1e-9, False), (True, False), ("0.1", False)])
def test_rho_range_and_message(rho, ok):
    if ok:
        assert check_rho(rho) == float(rho)
    else:
        with pytest.raises(ConfigError) as err:
            check_rho(rho)
        assert str(err.value) == (f"rho must be a number in [0.0, 10.0], but got rho={rho!r}; "
                                  "typical values: sam 0.01-0.5, asam 0.5-5.")


def test_unknown_variant_lists_the_registered_ones():
    with pytest.raises(ConfigError) as err:
        get_variant("samm")
    assert str(err.value) == f"unknown variant 'samm'; choose one of {', '.join(list_variants())}."


@pytest.mark.parametrize("direction", ["none", "loss", "obf", "random"])
def test_registering_a_variant_of_each_direction(direction, scratch_registry):
    spec = register_variant(VariantSpec(f"mine-{direction}", direction, adaptive=True))
    assert get_variant(f"mine-{direction}") is spec
    assert list_variants()[-1] == f"mine-{direction}"
    assert spec.perturbs == (direction != "none")


def test_registering_twice_or_an_unknown_direction_is_refused(scratch_registry):
    with pytest.raises(ValueError, match=r"^variant 'sam' is already registered\.$"):
        register_variant(VariantSpec("sam", "loss"))
    with pytest.raises(ValueError, match=r"^unknown direction 'up' for variant 'up-sam'\.$"):
        register_variant(VariantSpec("up-sam", "up"))
    assert "up-sam" not in list_variants()
