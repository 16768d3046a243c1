"""The learning-rate schedule (``lr_factor``): linear warm-up, then cosine decay to ``final``,
against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from samtune.schedules._lr import lr_factor


@pytest.mark.parametrize("step, expected", [(0, 1.0), (5, 0.5), (10, 0.0), (20, 0.0)])
def test_cosine_decay_reaches_half_at_the_middle_and_stays_at_the_end(step, expected):
    # 11 steps without warm-up: t = step / 10
    assert lr_factor(step, total_steps=11) == pytest.approx(expected, abs=1e-12)


def test_the_decay_ends_at_final_and_passes_halfway_between_1_and_final():
    assert lr_factor(5, total_steps=11, final=0.2) == pytest.approx(0.6)
    assert lr_factor(10, total_steps=11, final=0.2) == pytest.approx(0.2)
    assert lr_factor(30, total_steps=11, final=0.2) == pytest.approx(0.2)
    assert lr_factor(2, total_steps=11, final=0.2) == pytest.approx(
        0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.2)))


def test_warm_up_climbs_linearly_then_the_decay_starts_from_1():
    got = [lr_factor(s, total_steps=10, warmup_steps=4) for s in range(10)]
    assert got[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # decay over steps 4..9: t = (step - 4) / 5
    assert got[4:] == pytest.approx([0.5 * (1 + math.cos(math.pi * t / 5)) for t in range(6)])


@pytest.mark.parametrize("total", [1, 2])
def test_a_run_of_one_or_two_steps_starts_at_1_and_ends_at_final(total):
    assert lr_factor(0, total_steps=total) == 1.0
    assert lr_factor(total - 1, total_steps=total, final=0.1) == pytest.approx(0.1 if total > 1 else 1.0)
