"""Rules of the forgetting tracker, the step metrics and the epoch aggregator, by known answers."""

from __future__ import annotations

import math

import pytest
import torch

from samtune.errors import ConfigError
from samtune.train._aggregator import EpochAggregator
from samtune.train.metrics import ForgettingTracker, StepMetrics, step_metrics

TARGETS = torch.tensor([0, 1, 2, 0])
CLEAN = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 4.0]])
PERTURBED = torch.tensor([[2.0, 1.0, 0.0], [1.5, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 1.0, 3.0]])


def _steps(idx: list[list[int]], correct: list[list[bool]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(idx), torch.tensor(correct)


# ForgettingTracker


@pytest.mark.parametrize("bad", [True, False, -1, -2])
def test_tracker_size_must_be_a_non_negative_int_not_a_bool(bad: object) -> None:
    """A bool or a negative size is refused, naming the value."""
    with pytest.raises(ValueError, match=f"n_examples must be a non-negative integer, got {bad!r}"):
        ForgettingTracker(bad)  # type: ignore[arg-type]


def test_tracker_of_zero_examples_is_valid_and_empty() -> None:
    """Zero examples is a valid (empty) tracker: no events, rate 0, empty counts."""
    t = ForgettingTracker(0)
    assert t.n_examples == 0
    t.update_steps(torch.zeros(2, 0, dtype=torch.int64), torch.zeros(2, 0, dtype=torch.bool))
    assert t.epoch_rate() == 0.0 and t.total_events == 0
    assert t.forgetting_counts().tolist() == [] and t.presented().tolist() == []


def test_update_refuses_two_dimensional_input_as_not_one_step() -> None:
    """``update`` takes one step: 2-D input of equal shapes is refused with its shapes."""
    t = ForgettingTracker(6)
    idx, correct = _steps([[0, 1, 2], [3, 4, 5]], [[True] * 3, [False] * 3])
    with pytest.raises(ValueError, match=r"1-D tensors of the same length, got shapes \(2, 3\) and \(2, 3\)"):
        t.update(idx, correct)
    assert not t.presented().any()


def test_update_steps_refuses_one_dimensional_and_non_integer_indices() -> None:
    """``update_steps`` needs (steps, batch) integer indices; the error names what came."""
    t = ForgettingTracker(3)
    with pytest.raises(ValueError, match=r"\(steps, batch\) tensors of the same shape, got shapes \(3,\) and \(3,\)"):
        t.update_steps(torch.arange(3), torch.ones(3, dtype=torch.bool))
    for dtype in (torch.float32, torch.bool):
        with pytest.raises(TypeError, match=f"indices must be an integer tensor, got {dtype}"):
            t.update_steps(torch.zeros(1, 2, dtype=dtype), torch.ones(1, 2, dtype=torch.bool))


@pytest.mark.parametrize(
    ("idx", "message"),
    [([2, -1], r"out of range \[0, 3\): min -1, max 2"), ([0, 3], r"out of range \[0, 3\): min 0, max 3")],
)
def test_out_of_range_indices_raise_naming_the_range(idx: list[int], message: str) -> None:
    """-1 (which would wrap around) and n are refused with the range, and nothing is recorded."""
    t = ForgettingTracker(3)
    with pytest.raises(IndexError, match=message):
        t.update(torch.tensor(idx), torch.tensor([True, True]))
    assert not t.presented().any() and t.epoch_rate() == 0.0


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.uint8])
def test_indices_of_any_integer_dtype_count_as_int64(dtype: torch.dtype) -> None:
    """Forgetting counts do not depend on the indices' integer dtype."""
    idx, correct = _steps([[0, 1, 2], [2, 1, 0], [1, 2, 3]], [[True, True, False], [True, False, False],
                                                                [True, True, True]])
    t = ForgettingTracker(4)
    t.update_steps(idx.to(dtype), correct)
    # 1: T -> F (event) -> T; 0: T -> F (event); 2: F -> T -> T; 3 first seen.
    assert t.forgetting_counts().tolist() == [1, 1, 0, 0]
    assert t.epoch_rate() == 2 / 5


def test_index_repeated_in_a_batch_compares_with_the_previous_batch_for_any_index() -> None:
    """Each presentation of an index repeated in one batch compares with the previous batch."""
    t = ForgettingTracker(3)
    t.update_steps(*_steps([[1, 2], [2, 2]], [[True, True], [False, False]]))
    assert t.forgetting_counts().tolist() == [0, 0, 2]  # both compare with step 1's True
    # The same for the smallest index, repeated in a batch given on its own.
    t = ForgettingTracker(2)
    t.update(torch.tensor([0]), torch.tensor([True]))
    t.update(torch.tensor([0, 0]), torch.tensor([False, False]))
    assert t.forgetting_counts().tolist() == [2, 0] and t.epoch_rate() == 1.0


def test_the_last_value_of_a_repeated_index_is_kept() -> None:
    """An index repeated in a batch leaves its last value for the next presentation."""
    t = ForgettingTracker(3)
    t.update(torch.tensor([0, 2, 2, 1, 2]), torch.tensor([True, False, False, True, True]))
    t.update(torch.tensor([2, 1]), torch.tensor([False, False]))
    assert t.forgetting_counts().tolist() == [0, 1, 1]


def test_forgetting_counts_are_an_int64_copy() -> None:
    """``forgetting_counts`` returns int64, and editing it leaves the tracker alone."""
    t = ForgettingTracker(2)
    t.update(torch.tensor([0, 1]), torch.tensor([True, True]))
    t.update(torch.tensor([0, 1]), torch.tensor([False, True]))
    counts = t.forgetting_counts()
    assert counts.dtype == torch.int64 and counts.tolist() == [1, 0]
    counts += 5
    assert t.forgetting_counts().tolist() == [1, 0]


# step_metrics


def test_per_example_losses_are_averaged() -> None:
    """A per-example given loss of two examples is their mean."""
    m = step_metrics(CLEAN[:2], TARGETS[:2], PERTURBED[:2], clean_loss=torch.tensor([1.0, 3.0]),
                     perturbed_loss=torch.tensor([2.0, 6.0]))
    assert m.loss == 2.0 and m.loss_gap == 2.0


def test_tensor_losses_are_read_in_float32() -> None:
    """A float64 scalar loss is read as float32, like the losses computed from the logits."""
    third = torch.tensor(1 / 3, dtype=torch.float64)
    m = step_metrics(CLEAN, TARGETS, PERTURBED, clean_loss=third, perturbed_loss=third * 2)
    assert m.loss == third.float().item() != 1 / 3
    assert m.loss_gap == (third * 2).float().item() - third.float().item()


def test_single_example_step_and_its_epoch_mean() -> None:
    """A batch of one example is valid, and one such step makes every epoch key."""
    logits, target = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    m = step_metrics(logits, target, torch.tensor([[0.0, 1.0]]))
    assert (m.n, m.acc, m.flip_rate) == (1, 1.0, 1.0)
    p_clean, p_pert = torch.softmax(logits, 1)[0, 0].item(), math.exp(0) / (1 + math.e)
    assert m.p_drop == pytest.approx(p_clean - p_pert, rel=1e-6)
    assert m.loss_gap == pytest.approx(math.log(p_clean) - math.log(p_pert), rel=1e-6)
    assert m.bias_clean == pytest.approx(-math.log(p_clean), rel=1e-6)  # prior (1, 0)
    agg = EpochAggregator()
    agg.add_step(logits, target, torch.tensor([[0.0, 1.0]]))
    assert len(agg.result()) == 7 and agg.result()["flip_rate"] == 1.0


def test_given_prior_with_fractions_and_an_empty_class() -> None:
    """A given prior may hold fractions below 1 and zeros; KL(prior || mean prediction)."""
    prior = [0.25, 0.75, 0.0]
    mean_pred = torch.softmax(CLEAN, dim=1).mean(dim=0).tolist()
    expected = sum(p * math.log(p / q) for p, q in zip(prior, mean_pred) if p > 0)
    m = step_metrics(CLEAN, TARGETS, prior=prior)
    assert m.bias_clean == pytest.approx(expected, rel=1e-5)
    # float64 priors are read in float32: the same floats as a float32 prior.
    assert step_metrics(CLEAN, TARGETS, prior=torch.tensor(prior, dtype=torch.float64)) == m
    assert step_metrics(CLEAN, TARGETS, prior=torch.tensor(prior)) == m


def test_bad_priors_and_batches_fail_saying_what_to_give() -> None:
    """The error messages name the shape or value that came and what is accepted."""
    with pytest.raises(ConfigError, match=r"the label prior has shape \(2,\) but there are 3 classes; "
                       r"give one non-negative frequency per class"):
        step_metrics(CLEAN, TARGETS, prior=[0.5, 0.5])
    with pytest.raises(ConfigError, match="the label prior must be finite, non-negative and not all "
                       "zero; give one frequency per class"):
        step_metrics(CLEAN, TARGETS, prior=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"clean_logits must have shape \(N, K\), got \(4,\)"):
        step_metrics(CLEAN[:, 0], TARGETS)
    with pytest.raises(ValueError, match="^step_metrics needs a non-empty batch$"):
        step_metrics(CLEAN[:0], TARGETS[:0])


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8])
def test_targets_of_any_integer_dtype_give_the_int64_result(dtype: torch.dtype) -> None:
    """Targets are read as int64 class indices whatever their integer dtype."""
    expected = step_metrics(CLEAN, TARGETS, PERTURBED)
    assert step_metrics(CLEAN, TARGETS.to(dtype), PERTURBED) == expected
    agg = EpochAggregator()
    agg.add_step(CLEAN, TARGETS.to(dtype), PERTURBED)
    assert agg.flush() == [expected]


def test_perturbed_logits_are_read_in_the_clean_logits_dtype() -> None:
    """float32 perturbed logits with bf16 clean ones count as rounded to bf16."""
    gen = torch.Generator().manual_seed(0)
    clean, targets = torch.randn(16, 5, generator=gen).bfloat16(), torch.randint(0, 5, (16,), generator=gen)
    perturbed = torch.randn(16, 5, generator=gen) * 3
    rounded = step_metrics(clean, targets, perturbed.bfloat16())
    assert step_metrics(clean, targets, perturbed) == rounded
    assert step_metrics(clean.float(), targets, perturbed).loss_gap != rounded.loss_gap


# EpochAggregator


def test_default_buffer_flushes_after_32_steps() -> None:
    """By default 32 steps are buffered: the 32nd computes them, the 31st does not."""
    agg = EpochAggregator()
    for _ in range(31):
        agg.add_step(CLEAN, TARGETS)
    assert len(agg.flush()) == 31
    for _ in range(32):
        agg.add_step(CLEAN, TARGETS)
    assert agg.flush() == []


def test_max_logits_counts_each_pass_once() -> None:
    """A step holds N x K logits per pass; the buffer flushes once it holds max_logits."""
    agg = EpochAggregator(max_logits=13)  # a clean-only 4 x 3 step: 12 logits
    for _ in range(2):  # the count starts at 0 and returns to 0 after a flush
        agg.add_step(CLEAN, TARGETS)
        assert len(agg.flush()) == 1
    agg.add_step(CLEAN, TARGETS)
    agg.add_step(CLEAN, TARGETS)  # 24 >= 13: computed at once
    assert agg.flush() == []
    agg = EpochAggregator(max_logits=49)  # a SAM 4 x 3 step: 24 logits
    agg.add_step(CLEAN, TARGETS, PERTURBED)
    agg.add_step(CLEAN, TARGETS, PERTURBED)
    assert len(agg.flush()) == 2
    agg = EpochAggregator(max_logits=1)  # the smallest: every step computed at once
    agg.add_step(CLEAN, TARGETS)
    assert agg.flush() == [] and agg.n == 4


def test_buffer_limits_must_be_at_least_one() -> None:
    """max_steps and max_logits below 1 are refused, naming the value."""
    with pytest.raises(ValueError, match=r"max_logits must be at least 1, but got max_logits=0\."):
        EpochAggregator(max_logits=0)
    with pytest.raises(ValueError, match=r"max_steps must be at least 1, but got max_steps=0\."):
        EpochAggregator(max_steps=0)


def test_steps_after_reset_start_a_new_mean() -> None:
    """After ``reset`` the means are over the steps added since."""
    agg = EpochAggregator()
    agg.add(StepMetrics(1.0, 0.5, 10, None, None, None, 0.1, None))
    agg.reset()
    agg.add(StepMetrics(3.0, 0.25, 2, 0.5, 0.2, 0.1, 0.3, 0.4))
    agg.add(StepMetrics(1.0, 1.0, 6, None, None, None, 0.1, None))
    assert agg.result() == pytest.approx({
        "train_loss": 1.5, "train_acc": 0.8125, "flip_rate": 0.5, "loss_gap": 0.2, "p_drop": 0.1,
        "bias_clean": 0.15, "bias_perturbed": 0.4,
    })
    assert agg.n == 8


def test_add_step_index_errors_say_what_to_do() -> None:
    """Indices without a tracker, a tracker without indices, float indices: each says the fix."""
    with pytest.raises(ValueError, match=r"this aggregator feeds a ForgettingTracker: give the "
                       r"batch's dataset indices \(indices=\.\.\.\)"):
        EpochAggregator(ForgettingTracker(4)).add_step(CLEAN, TARGETS)
    with pytest.raises(ValueError, match=r"indices were given but no ForgettingTracker to feed them "
                       r"to: create the aggregator as EpochAggregator\(tracker\), or leave indices out"):
        EpochAggregator().add_step(CLEAN, TARGETS, indices=torch.arange(4))
    with pytest.raises(TypeError, match="indices must be an integer tensor, got torch.float32"):
        EpochAggregator(ForgettingTracker(4)).add_step(CLEAN, TARGETS, indices=torch.zeros(4))


def test_add_step_takes_indices_of_any_integer_dtype() -> None:
    """int16 / int32 / uint8 indices, mixed across steps, feed the tracker like int64 ones."""
    tracker = ForgettingTracker(4)
    agg = EpochAggregator(tracker)
    for dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        logits = CLEAN if dtype in (torch.int64, torch.int16) else PERTURBED
        agg.add_step(logits, TARGETS, indices=torch.arange(4, dtype=dtype))
    agg.flush()
    # CLEAN correct on examples 0, 1; PERTURBED on 0, 2: 1 forgets twice, 2 once.
    assert tracker.forgetting_counts().tolist() == [0, 2, 1, 0]
    assert tracker.epoch_rate() == 3 / 12
