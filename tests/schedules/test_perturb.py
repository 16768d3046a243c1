"""Perturbation schedules: which steps perturb, known answers."""

from __future__ import annotations

import pytest

from samtune import ConfigError
from samtune.schedules import PerturbSchedule, list_perturb_schedules


def test_registered():
    assert list_perturb_schedules() == ["always", "late", "stochastic", "periodic"]


def test_always_late_periodic_known_steps():
    assert all(PerturbSchedule()(t) for t in range(10))
    late = PerturbSchedule("late", {"start": 0.75, "total_steps": 8})
    assert [t for t in range(8) if late(t)] == [6, 7]
    assert [t for t in range(8) if PerturbSchedule("late", {"start": 0.0, "total_steps": 8})(t)] \
        == list(range(8))
    periodic = PerturbSchedule("periodic", {"every": 4})
    assert [t for t in range(12) if periodic(t)] == [0, 4, 8]
    assert all(PerturbSchedule("periodic", {"every": 1})(t) for t in range(5))


def test_stochastic_is_seeded_pure_and_near_p():
    s = PerturbSchedule("stochastic", {"p": 0.25, "seed": 3})
    first = [s(t) for t in range(4000)]
    assert first == [s(t) for t in range(4000)]  # a pure function of the step
    assert [s(t) for t in reversed(range(4000))] == first[::-1]  # order of asking is irrelevant
    assert abs(sum(first) / 4000 - 0.25) < 0.03
    other = [PerturbSchedule("stochastic", {"p": 0.25, "seed": 4})(t) for t in range(4000)]
    assert other != first
    assert not any(PerturbSchedule("stochastic", {"p": 0.0})(t) for t in range(100))
    assert all(PerturbSchedule("stochastic", {"p": 1.0})(t) for t in range(100))
    assert s.share(4000) == sum(first) / 4000


@pytest.mark.parametrize("name, kwargs, match", [
    ("never", {}, "unknown perturbation schedule"),
    ("late", {"every": 2}, "unknown perturb_kwargs"),
    ("late", {"start": 1.5}, "start must be in"),
    ("stochastic", {"p": -0.1}, "p must be in"),
    ("stochastic", {"seed": 1.5}, "seed must be"),
    ("periodic", {"every": 0}, "every must be"),
])
def test_bad_arguments_fail_with_the_value(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PerturbSchedule(name, kwargs)


def test_late_needs_total_steps():
    with pytest.raises(ConfigError, match="total_steps"):
        PerturbSchedule("late", {"start": 0.5})(0)
