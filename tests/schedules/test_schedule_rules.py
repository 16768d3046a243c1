"""The rho and perturbation schedules at their edges, and the stochastic schedule's stream
against SplitMix64's published outputs (from a mutation run of both files)."""

from __future__ import annotations

import pytest

from samtune import ConfigError
from samtune.schedules import PerturbSchedule, RhoSchedule
from samtune.schedules._perturb import _uniform

# SplitMix64 (Vigna) started at state 0: its first outputs, the reference implementation's
SPLITMIX64_FROM_0 = (0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC)


def test_the_stochastic_draw_is_splitmix64_of_seed_times_gamma_plus_step_plus_one():
    # state seed * gamma + step + 1: seed j at step -1 is the reference stream's j-th state
    for j, out in enumerate(SPLITMIX64_FROM_0, start=1):
        assert _uniform(j, -1) == (out >> 11) / 2**53
    assert 0.0 <= min(_uniform(0, t) for t in range(1000)) < max(_uniform(0, t) for t in range(1000)) < 1.0


def test_the_stochastic_schedule_is_pinned_for_stored_studies():
    """A resumed study must gate the same steps under a new version: seed 0 and 7, p = 0.5."""
    a = [PerturbSchedule("stochastic", {"p": 0.5})(t) for t in range(12)]
    b = [PerturbSchedule("stochastic", {"p": 0.5, "seed": 7})(t) for t in range(12)]
    assert a == [_uniform(0, t) < 0.5 for t in range(12)] and a != b
    assert not any(PerturbSchedule("stochastic", {"p": 0})(t) for t in range(200))
    assert all(PerturbSchedule("stochastic", {"p": 1})(t) for t in range(200))


@pytest.mark.parametrize("kwargs", [{"start": 1}, {"start": 0}, {"start": 1.0, "total_steps": 0},
                                    {"p": 1}, {"p": 0.0}, {"seed": 0}, {"every": 1}])
def test_the_edges_of_each_argument_are_accepted(kwargs):
    name = ("late" if {"start", "total_steps"} & kwargs.keys() else
            "stochastic" if {"p", "seed"} & kwargs.keys() else "periodic")
    PerturbSchedule(name, kwargs)


@pytest.mark.parametrize("name,kwargs,match", [
    ("late", {"start": 1.01}, "start must be in"),
    ("late", {"start": True}, "start=True"),
    ("late", {"total_steps": -1}, "total_steps=-1"),
    ("late", {"total_steps": 2.5}, "total_steps=2.5"),
    ("stochastic", {"p": 1.5}, "p=1.5"),
    ("stochastic", {"p": True}, "p=True"),
    ("stochastic", {"seed": -1}, "seed=-1"),
    ("periodic", {"every": 0}, "every=0"),
    ("always", {"p": 0.5}, r"accepted: none"),
    ("late", {"every": 2}, r"accepted: \['start', 'total_steps'\]"),
    ("sometimes", {}, "choose one of always, late, stochastic, periodic"),
])
def test_bad_perturbation_arguments_name_the_value_and_the_choices(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PerturbSchedule(name, kwargs)


def test_periodic_defaults_to_every_other_step_and_share_counts_the_perturbed():
    periodic = PerturbSchedule("periodic")
    assert [periodic(t) for t in range(4)] == [True, False, True, False]
    assert periodic.share(4) == 0.5 and periodic.share(1) == 1.0 and periodic.share(0) == 0.0
    assert PerturbSchedule("late", {"start": 0.5, "total_steps": 4}).share(4) == 0.5


def test_rho_schedules_at_their_ends_and_past_them():
    cos = RhoSchedule("cosine", 0.2, {"total_steps": 3, "rho_min": 0.05})
    assert [cos(t) for t in (0, 1, 2, 9)] == pytest.approx([0.2, 0.125, 0.05, 0.05])
    lin = RhoSchedule("linear", 0.1, {"total_steps": 2})  # rho_min 0 by default
    assert [lin(0), lin(1), lin(5)] == pytest.approx([0.1, 0.0, 0.0])
    assert RhoSchedule("linear", 0.1, {"total_steps": 1})(0) == pytest.approx(0.1)  # one step: the start


def test_lr_prop_defaults_and_a_degenerate_lr_range():
    s = RhoSchedule("lr_prop", 0.1)  # rho_min = lr_min = 0: rho in proportion to lr
    assert s(0, lr=0.05, lr_max=0.1) == pytest.approx(0.05)
    assert s(0) == 0.1  # no lr given: lr_max 0 is no range, rho as it is
    flat = RhoSchedule("lr_prop", 0.1, {"lr_min": 0.1})
    assert flat(0, lr=0.1, lr_max=0.1) == 0.1  # lr_max == lr_min: no division by zero


@pytest.mark.parametrize("kwargs,match", [
    ({"rho_max": 1}, r"unknown schedule_kwargs \['rho_max'\].*accepted: \['lr_min', 'rho_min', "
                     r"'total_steps', 'warmup_steps'\]"),
    ({"rho_min": -0.1}, "rho_min must be >= 0, but got rho_min=-0.1"),
    ({"lr_min": -1}, "lr_min must be >= 0, but got lr_min=-1"),
    ({"lr_min": "0"}, "lr_min="),
    ({"total_steps": -5}, "total_steps must be a whole number >= 0, but got total_steps=-5"),
    ({"warmup_steps": 2.0}, "warmup_steps must be a whole number"),
])
def test_bad_rho_schedule_arguments_name_the_value(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RhoSchedule("lr_prop", 0.1, kwargs)


def test_zero_warmup_and_zero_total_steps_are_accepted_and_unknown_names_list_the_choices():
    assert RhoSchedule("constant", 0.1, {"warmup_steps": 0, "total_steps": 0})(3) == 0.1
    with pytest.raises(ConfigError, match="choose one of constant, cosine, linear, lr_prop"):
        RhoSchedule("step", 0.1)


def test_schedules_that_need_total_steps_say_how_to_give_them():
    fix = r"pass build_optimizer\(\.\.\., total_steps=N\) or set "
    with pytest.raises(ConfigError, match=fix + r"perturb_kwargs\['total_steps'\]"):
        PerturbSchedule("late")(0)
    with pytest.raises(ConfigError, match=fix + r"schedule_kwargs\['total_steps'\]"):
        RhoSchedule("linear", 0.1)(0)
