from __future__ import annotations

import math

import pytest

from samtune import ConfigError
from samtune.schedules import RhoSchedule, list_schedules, lr_factor


def test_schedules_registered():
    assert list_schedules() == ["constant", "cosine", "linear", "lr_prop"]


def test_constant_linear_cosine_known_values():
    assert RhoSchedule("constant", 0.1)(99) == 0.1
    lin = RhoSchedule("linear", 0.1, {"total_steps": 11, "rho_min": 0.01})
    assert lin(0) == pytest.approx(0.1) and lin(5) == pytest.approx(0.055) and lin(10) == pytest.approx(0.01)
    cos = RhoSchedule("cosine", 0.2, {"total_steps": 5})
    assert [cos(s) for s in range(5)] == pytest.approx([0.2 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(5)])


def test_lr_prop_is_gsam_formula_and_clipped_at_zero():
    s = RhoSchedule("lr_prop", 0.1, {"rho_min": 0.02, "lr_min": 0.001})
    lr_max = 0.1
    for lr in (0.1, 0.05, 0.001):
        assert s(0, lr=lr, lr_max=lr_max) == pytest.approx(0.02 + 0.08 * (lr - 0.001) / (0.099))
    assert s(0, lr=0.0, lr_max=lr_max) >= 0.0


def test_warmup_ramps_any_schedule():
    s = RhoSchedule("constant", 0.1, {"warmup_steps": 4})
    assert [s(t) for t in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert not s.is_constant


def test_decaying_schedule_needs_total_steps():
    with pytest.raises(ConfigError, match="total_steps"):
        RhoSchedule("cosine", 0.1)(3)


def test_lr_factor_warmup_then_cosine():
    assert lr_factor(0, total_steps=10, warmup_steps=2) == 0.5
    assert lr_factor(1, total_steps=10, warmup_steps=2) == 1.0
    assert lr_factor(2, total_steps=10, warmup_steps=2) == 1.0
    assert lr_factor(9, total_steps=10, warmup_steps=2) == pytest.approx(0.0)
