"""SAMConfig's rules at the edges: accepted ranges, schedules it builds, its dict and its description."""

from __future__ import annotations

import re

import pytest

from samtune import ConfigError, SAMConfig


def _error(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        SAMConfig(**kwargs)
    return str(info.value)


def _accepted(message: str) -> set[str]:
    listed = re.search(r"accepted: (.*)\.$", message)
    assert listed, message
    return set(listed.group(1).split(", "))


# -- base optimizer arguments ---------------------------------------------------------------


def test_unknown_base_argument_lists_the_accepted_ones_but_not_the_reserved():
    """An unknown base argument names the accepted ones, without those samtune owns (foreach, ...)."""
    accepted = _accepted(_error(base_kwargs={"lr": 0.1, "betas": (0.9, 0.9)}))
    assert {"lr", "momentum", "weight_decay", "nesterov", "dampening"} <= accepted
    assert not accepted & {"params", "foreach", "fused", "capturable", "differentiable", "maximize"}


@pytest.mark.parametrize("lr", [0, 0.0, 1e-4, 10, 10.0])
def test_lr_bounds_are_inclusive(lr):
    """lr is accepted in the closed range [0, 10]."""
    assert SAMConfig(base_kwargs={"lr": lr}).lr == float(lr)


@pytest.mark.parametrize("lr", [True, "0.1", None, 10.5, -1e-9])
def test_lr_that_is_not_a_number_in_range_is_refused(lr):
    """lr must be a real number (a bool is not one) in [0, 10]; the message shows the value."""
    assert f"lr={lr!r}" in _error(base_kwargs={"lr": lr})


@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_zero_weight_decay_is_accepted(base):
    """weight_decay = 0 is the boundary of the accepted range."""
    assert SAMConfig(base=base, base_kwargs={"weight_decay": 0}).base_kwargs["weight_decay"] == 0


@pytest.mark.parametrize("wd", [-1, -1e-6, "0.1"])
def test_negative_or_non_numeric_weight_decay_is_refused(wd):
    """weight_decay must be a number >= 0; the message shows the value."""
    assert f"weight_decay={wd!r}" in _error(base_kwargs={"weight_decay": wd})


@pytest.mark.parametrize("momentum", [1, 1.0, -0.1])
def test_momentum_must_be_below_one(momentum):
    """momentum is accepted in [0, 1): 1 itself is refused."""
    assert f"momentum={momentum!r}" in _error(base_kwargs={"momentum": momentum})


def test_momentum_zero_is_accepted():
    """momentum = 0 is plain SGD."""
    assert SAMConfig(base_kwargs={"momentum": 0.0}).base_kwargs["momentum"] == 0.0


def test_nesterov_needs_momentum():
    """nesterov=True without momentum fails at construction, saying what to set."""
    message = _error(base_kwargs={"nesterov": True, "momentum": 0.0})
    assert message == "nesterov=True needs momentum > 0; set momentum (e.g. 0.9)."
    cfg = SAMConfig(base_kwargs={"nesterov": True, "momentum": 0.9})
    assert cfg.base_kwargs["nesterov"] is True and cfg.base_kwargs["momentum"] == 0.9


def test_unknown_base_optimizer_lists_the_choices():
    """An unknown base optimizer names sgd and adamw."""
    assert "choose one of sgd, adamw." in _error(base="lbfgs")


# -- rho, m, clipping, schedules at construction ---------------------------------------------


def test_the_baseline_does_not_range_check_rho():
    """sgd does not perturb: its rho is kept as a float, never refused; a perturbing variant checks it."""
    cfg = SAMConfig(variant="sgd", rho=50)
    assert cfg.rho == 50.0 and isinstance(cfg.rho, float)
    assert "rho=50" in _error(variant="sam", rho=50)


@pytest.mark.parametrize("m", [True, 2.5, "8", -3])
def test_m_must_be_a_whole_number(m):
    """m is an int >= 1 (a bool is not one) or None; the message shows the value."""
    assert f"m={m!r}" in _error(m=m)


@pytest.mark.parametrize("m", [1, 2, None])
def test_m_one_is_accepted(m):
    """m = 1 (the smallest micro-batch) is valid, as is None (the whole batch)."""
    assert SAMConfig(m=m).m == m


@pytest.mark.parametrize("norm", [0.5, 1e-3, 1])
def test_max_grad_norm_below_one_is_accepted(norm):
    """max_grad_norm is any positive number."""
    assert SAMConfig(max_grad_norm=norm).max_grad_norm == norm


@pytest.mark.parametrize("bad", [-1.0, "1.0"])
def test_max_grad_norm_must_be_a_positive_number(bad):
    """max_grad_norm <= 0 or not a number is refused."""
    assert f"max_grad_norm={bad!r}" in _error(max_grad_norm=bad)


def test_perturb_kwargs_are_validated_at_construction():
    """A bad perturbation-schedule argument fails when the config is made, not at training."""
    assert "every=0" in _error(perturb="periodic", perturb_kwargs={"every": 0})
    assert "unknown perturb_kwargs" in _error(perturb="late", perturb_kwargs={"every": 3})


# -- the schedules a config builds ---------------------------------------------------------


def test_rho_schedule_takes_total_steps_from_the_argument():
    """cosine from rho to rho_min over total_steps: rho at step 0, rho_min at the last step."""
    cfg = SAMConfig(rho=0.2, schedule="cosine", schedule_kwargs={"rho_min": 0.02})
    sched = cfg.rho_schedule(total_steps=11)
    assert sched(0) == pytest.approx(0.2)
    assert sched(5) == pytest.approx(0.11)
    assert sched(10) == pytest.approx(0.02)
    assert cfg.schedule_kwargs == {"rho_min": 0.02}  # the config itself is not changed


def test_rho_schedule_keeps_its_own_total_steps_over_the_argument():
    """schedule_kwargs['total_steps'] wins over the total_steps handed in."""
    cfg = SAMConfig(rho=0.1, schedule="linear", schedule_kwargs={"total_steps": 3})
    assert cfg.rho_schedule(total_steps=100)(2) == pytest.approx(0.0)
    assert cfg.rho_schedule(total_steps=100)(1) == pytest.approx(0.05)


def test_constant_rho_schedule_returns_the_configured_rho():
    """A constant schedule gives cfg.rho at every step, with or without total_steps."""
    cfg = SAMConfig(rho=0.07)
    assert cfg.rho_schedule()(0) == pytest.approx(0.07)
    assert cfg.rho_schedule(total_steps=10)(9) == pytest.approx(0.07)


def test_late_perturb_schedule_takes_total_steps_from_the_argument():
    """late with start 0.25 over 4 steps: the first step is a base step, the rest perturb."""
    cfg = SAMConfig(perturb="late", perturb_kwargs={"start": 0.25})
    assert [cfg.perturb_schedule(total_steps=4)(t) for t in range(4)] == [False, True, True, True]
    assert [cfg.perturb_schedule(total_steps=8)(t) for t in range(3)] == [False, False, True]
    assert cfg.perturb_kwargs == {"start": 0.25}


def test_late_perturb_schedule_keeps_its_own_total_steps():
    """perturb_kwargs['total_steps'] wins over the argument."""
    cfg = SAMConfig(perturb="late", perturb_kwargs={"total_steps": 4})
    assert [cfg.perturb_schedule(total_steps=100)(t) for t in range(4)] == [False, False, True, True]


@pytest.mark.parametrize("perturb, kwargs", [("always", {}), ("periodic", {"every": 3}), ("stochastic", {})])
def test_other_perturb_schedules_ignore_total_steps(perturb, kwargs):
    """Only ``late`` takes total_steps; the others are built with their own kwargs alone."""
    cfg = SAMConfig(perturb=perturb, perturb_kwargs=kwargs)
    sched = cfg.perturb_schedule(total_steps=10)
    assert sched.kwargs == kwargs and sched.name == perturb
    if perturb == "periodic":
        assert [sched(t) for t in range(4)] == [True, False, False, True]


# -- dict and description ------------------------------------------------------------------

_FIELDS = {"variant", "rho", "schedule", "schedule_kwargs", "m", "base", "base_kwargs",
           "variant_kwargs", "max_grad_norm"}


def test_default_dict_leaves_out_the_default_perturbation():
    """perturb/perturb_kwargs appear in to_dict only when either is off its default."""
    assert set(SAMConfig().to_dict()) == _FIELDS
    for cfg in (SAMConfig(perturb="periodic"), SAMConfig(perturb="late", perturb_kwargs={"start": 0.1})):
        d = cfg.to_dict()
        assert set(d) == _FIELDS | {"perturb", "perturb_kwargs"}
        assert SAMConfig.from_dict(d) == cfg


def test_from_dict_refuses_a_non_mapping_and_names_its_type():
    """from_dict needs a dict; the message names the type it got."""
    with pytest.raises(ConfigError, match=r"^a SAMConfig must be a mapping, but got list\.$"):
        SAMConfig.from_dict(["sam"])


def test_from_dict_lists_the_accepted_fields():
    """An unknown field names every accepted one."""
    with pytest.raises(ConfigError) as info:
        SAMConfig.from_dict({"rhoo": 0.1})
    assert _accepted(str(info.value)) == _FIELDS | {"perturb", "perturb_kwargs"}


def test_description_shows_floats_to_three_digits_and_other_values_as_they_are():
    """Variant kwargs: numbers (stored as floats) as %.3g, strings (obf's prob) verbatim."""
    asam = SAMConfig(variant="asam", rho=1.0, variant_kwargs={"eta": 0.0123456})
    assert " eta=0.0123 " in asam.describe()
    obf = SAMConfig(variant="obf", rho=0.05, variant_kwargs={"C": 100, "prob": "softmax"})
    assert obf.describe() == "obf rho=0.05 C=100 prob=softmax schedule=constant m=batch (sgd, lr=0.05)"


def test_description_of_the_perturbation_schedule():
    """No parentheses without kwargs; several kwargs are comma-separated, sorted by name."""
    assert SAMConfig(perturb="periodic").describe() == (
        "sam rho=0.05 schedule=constant m=batch perturb=periodic (sgd, lr=0.05)")
    late = SAMConfig(perturb="late", perturb_kwargs={"total_steps": 100, "start": 0.25})
    assert " perturb=late(start=0.25,total_steps=100) " in late.describe()
    assert SAMConfig(variant="sgd").describe() == "sgd baseline (sgd, lr=0.05)"
