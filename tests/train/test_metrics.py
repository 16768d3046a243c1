"""Forgetting metrics: step metrics, example forgetting, epoch aggregation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from samtune.errors import ConfigError
from samtune.train._aggregator import EpochAggregator
from samtune.train.metrics import ForgettingTracker, StepMetrics, step_metrics

# 4 examples, 3 classes. At w: ex0, ex1 correct, ex2, ex3 wrong.
# At w+e: ex0 still correct, ex1 now wrong, ex2 now correct, ex3 still wrong.
TARGETS = torch.tensor([0, 1, 2, 0])
CLEAN = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 4.0]])
PERTURBED = torch.tensor([[2.0, 1.0, 0.0], [1.5, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 1.0, 3.0]])


def test_clean_only_step() -> None:
    m = step_metrics(CLEAN, TARGETS)
    assert m.n == 4
    assert m.acc == 0.5
    assert m.loss == pytest.approx(F.cross_entropy(CLEAN, TARGETS).item(), rel=1e-6)
    assert m.flip_rate is m.loss_gap is m.p_drop is m.bias_perturbed is None
    assert not m.has_perturbed


def test_flip_rate_is_exact() -> None:
    # 2 correct at w, 1 of them wrong at w+e; ex2 wrong->correct does not count.
    assert step_metrics(CLEAN, TARGETS, PERTURBED).flip_rate == 0.25
    assert step_metrics(CLEAN, TARGETS, CLEAN).flip_rate == 0.0
    all_wrong = torch.roll(torch.eye(3)[TARGETS] * 5, 1, dims=1)
    assert step_metrics(torch.eye(3)[TARGETS], TARGETS, all_wrong).flip_rate == 1.0


def test_loss_gap_and_p_drop_match_hand_computation() -> None:
    m = step_metrics(CLEAN, TARGETS, PERTURBED)
    gap = F.cross_entropy(PERTURBED, TARGETS) - F.cross_entropy(CLEAN, TARGETS)
    assert m.loss_gap == pytest.approx(gap.item(), rel=1e-5)
    pc = torch.softmax(CLEAN, dim=1)[torch.arange(4), TARGETS]
    pp = torch.softmax(PERTURBED, dim=1)[torch.arange(4), TARGETS]
    assert m.p_drop == pytest.approx((pc - pp).mean().item(), rel=1e-5)


def test_precomputed_losses_are_used() -> None:
    m = step_metrics(CLEAN, TARGETS, PERTURBED, clean_loss=torch.tensor(1.0), perturbed_loss=1.75)
    assert m.loss == 1.0
    assert m.loss_gap == 0.75
    per_example = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    assert step_metrics(CLEAN, TARGETS, clean_loss=per_example).loss == 2.5


def test_output_bias_is_zero_when_mean_prediction_equals_prior() -> None:
    targets = torch.tensor([0, 1])
    # Mean prediction (0.5, 0.5) equals the empirical prior (0.5, 0.5) but each is unsure.
    assert step_metrics(torch.zeros(2, 2), targets).bias_clean == pytest.approx(0.0, abs=1e-7)
    # Confident, correct predictions: mean prediction is the prior too.
    assert step_metrics(torch.eye(2) * 50, targets).bias_clean == pytest.approx(0.0, abs=1e-6)


def test_output_bias_matches_hand_computed_kl() -> None:
    m = step_metrics(CLEAN, TARGETS, PERTURBED)
    prior = torch.tensor([0.5, 0.25, 0.25])
    for logits, value in ((CLEAN, m.bias_clean), (PERTURBED, m.bias_perturbed)):
        mean_pred = torch.softmax(logits, dim=1).mean(dim=0)
        kl = (prior * (prior / mean_pred).log()).sum().item()
        assert kl > 0
        assert value == pytest.approx(kl, rel=1e-5)


def test_output_bias_with_given_prior_and_empty_classes() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    targets = torch.tensor([0, 1])
    mean_pred = torch.softmax(logits, dim=1).mean(dim=0)
    # Empirical prior (0.5, 0.5, 0): the empty class contributes 0.
    expected = sum(0.5 * math.log(0.5 / mean_pred[c].item()) for c in (0, 1))
    assert step_metrics(logits, targets).bias_clean == pytest.approx(expected, rel=1e-5)
    # A given prior is normalised.
    given = torch.tensor([1.0, 1.0, 2.0])
    p = given / given.sum()
    expected = (p * (p / mean_pred).log()).sum().item()
    assert step_metrics(logits, targets, prior=given).bias_clean == pytest.approx(
        expected, rel=1e-5
    )
    assert step_metrics(logits, targets, prior=[1.0, 1.0, 2.0]).bias_clean == pytest.approx(
        expected, rel=1e-5
    )


@pytest.mark.parametrize("prior", [[0.5, 0.5], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
def test_bad_prior(prior: list[float]) -> None:
    with pytest.raises(ConfigError):
        step_metrics(CLEAN, TARGETS, prior=prior)


def test_shape_errors_and_gradients_untouched() -> None:
    with pytest.raises(ValueError):
        step_metrics(CLEAN, TARGETS, PERTURBED[:2])
    with pytest.raises(ValueError):
        step_metrics(CLEAN, TARGETS[:3])
    logits = CLEAN.clone().requires_grad_(True)
    step_metrics(logits, TARGETS, logits * 2)
    assert logits.grad is None


def test_half_precision_logits() -> None:
    m = step_metrics(CLEAN.bfloat16(), TARGETS, PERTURBED.bfloat16())
    assert m.flip_rate == 0.25 and isinstance(m.loss, float)


def _tracker_step(t: ForgettingTracker, idx: list[int], correct: list[bool]) -> None:
    t.update(torch.tensor(idx, dtype=torch.int64), torch.tensor(correct))


def test_forgetting_tracker_counts_exactly_over_three_epochs() -> None:
    t = ForgettingTracker(5)
    # Epoch 1: first presentations never count, whatever the outcome.
    _tracker_step(t, [0, 1, 2], [True, True, False])
    _tracker_step(t, [3, 4], [False, True])
    assert t.epoch_rate() == 0.0 and t.total_events == 0
    t.end_epoch()
    # Epoch 2: 0 correct->wrong (event), 1 correct->correct, 2 wrong->correct (no event),
    # 3 wrong->wrong, 4 correct->wrong (event).
    _tracker_step(t, [4, 2], [False, True])
    _tracker_step(t, [1, 0, 3], [True, False, False])
    assert t.total_events == 2
    assert t.epoch_rate() == 2 / 5
    t.end_epoch()
    assert t.epoch_rate() == 0.0
    # Epoch 3 (only 4 examples shown): 0 wrong->correct, 2 correct->wrong (event),
    # 4 wrong->wrong, 1 correct->wrong (event).
    _tracker_step(t, [0, 2], [True, False])
    _tracker_step(t, [4, 1], [False, False])
    assert t.epoch_rate() == 2 / 4
    assert t.total_events == 4
    assert t.forgetting_counts().tolist() == [1, 1, 1, 0, 1]
    assert t.presented().all()


def test_forgetting_tracker_first_presentation_mid_run() -> None:
    t = ForgettingTracker(3)
    _tracker_step(t, [0], [True])
    t.end_epoch()
    _tracker_step(t, [0, 1], [False, False])  # 1 is new: not comparable
    assert t.epoch_rate() == 1.0 and t.total_events == 1
    assert t.presented().tolist() == [True, True, False]


def test_forgetting_tracker_rejects_bad_input() -> None:
    t = ForgettingTracker(3)
    with pytest.raises(IndexError):
        _tracker_step(t, [3], [True])
    with pytest.raises(ValueError):
        t.update(torch.tensor([0, 1]), torch.tensor([True]))
    with pytest.raises(TypeError):
        t.update(torch.tensor([0.0]), torch.tensor([True]))
    with pytest.raises(ValueError):
        ForgettingTracker(-1)


def _metrics(n: int, loss: float, perturbed: float | None) -> StepMetrics:
    return StepMetrics(
        loss=loss,
        acc=loss / 10,
        n=n,
        flip_rate=perturbed,
        loss_gap=perturbed,
        p_drop=perturbed,
        bias_clean=loss,
        bias_perturbed=perturbed,
    )


def test_epoch_aggregator_weights_by_n() -> None:
    agg = EpochAggregator()
    agg.add(_metrics(30, 1.0, 0.1))
    agg.add(_metrics(10, 3.0, 0.5))
    r = agg.result()
    assert list(r) == [
        "train_loss",
        "train_acc",
        "flip_rate",
        "loss_gap",
        "p_drop",
        "bias_clean",
        "bias_perturbed",
    ]
    assert r["train_loss"] == pytest.approx(1.5)
    assert r["train_acc"] == pytest.approx(0.15)
    assert r["bias_clean"] == pytest.approx(1.5)
    for key in ("flip_rate", "loss_gap", "p_drop", "bias_perturbed"):
        assert r[key] == pytest.approx(0.2)
    assert agg.n == 40


def test_epoch_aggregator_omits_perturbed_keys_for_a_baseline() -> None:
    agg = EpochAggregator()
    assert agg.result() == {}
    agg.add(step_metrics(CLEAN, TARGETS))
    agg.add(step_metrics(CLEAN[:2], TARGETS[:2]))
    r = agg.result()
    assert set(r) == {"train_loss", "train_acc", "bias_clean"}
    assert r["train_acc"] == pytest.approx((0.5 * 4 + 1.0 * 2) / 6)
    agg.reset()
    assert agg.result() == {}


def test_epoch_aggregator_averages_perturbed_keys_over_perturbed_steps_only() -> None:
    agg = EpochAggregator()
    agg.add(_metrics(10, 1.0, None))
    agg.add(_metrics(30, 1.0, 0.4))
    assert agg.result()["flip_rate"] == pytest.approx(0.4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_and_tracker_on_cuda_match_cpu() -> None:
    dev = torch.device("cuda")
    cpu = step_metrics(CLEAN, TARGETS, PERTURBED, clean_loss=torch.tensor(1.0))
    gpu = step_metrics(
        CLEAN.to(dev), TARGETS.to(dev), PERTURBED.to(dev), clean_loss=torch.tensor(1.0)
    )
    for field in ("loss", "acc", "flip_rate", "loss_gap", "p_drop", "bias_clean"):
        assert getattr(gpu, field) == pytest.approx(getattr(cpu, field), rel=1e-5)
    t = ForgettingTracker(3)
    t.update(torch.tensor([0, 1]), torch.tensor([True, True], device=dev))
    t.update(torch.tensor([0, 1], device=dev), torch.tensor([False, True], device=dev))
    assert t.total_events == 1 and t.epoch_rate() == 0.5


def _random_steps(seed: int, n_examples: int = 40) -> list[dict]:
    """Steps of mixed kinds: SAM and clean-only, two batch sizes, bf16, every loss form."""
    gen = torch.Generator().manual_seed(seed)
    steps = []
    for i in range(23):
        n, k = (8, 5) if i % 7 else (5, 5)  # a smaller batch now and then: a shape change
        clean = torch.randn(n, k, generator=gen) * 3
        perturbed = clean + torch.randn(n, k, generator=gen) if i % 5 else None
        if i in (10, 11):
            clean = clean.bfloat16()
            perturbed = perturbed.bfloat16() if perturbed is not None else None
        losses = (None, torch.rand((), generator=gen), torch.rand(n, generator=gen), 0.5)
        steps.append({
            "clean_logits": clean,
            "targets": torch.randint(0, k, (n,), generator=gen),
            "perturbed_logits": perturbed,
            "clean_loss": losses[i % 4],
            "perturbed_loss": losses[(i + 1) % 4],
            "indices": torch.randperm(n_examples, generator=gen)[:n],  # repeats across steps
        })
    return steps


@pytest.mark.parametrize("max_steps", [1, 3, 32])
def test_buffered_steps_give_exactly_the_step_by_step_results(max_steps: int) -> None:
    steps = _random_steps(0)
    by_step, tracker_by_step = EpochAggregator(), ForgettingTracker(40)
    tracker = ForgettingTracker(40)
    buffered = EpochAggregator(tracker, max_steps=max_steps)
    for st in steps:
        args = {k: v for k, v in st.items() if k != "indices"}
        m = step_metrics(args.pop("clean_logits"), args.pop("targets"), **args)
        by_step.add(m)
        tracker_by_step.update(st["indices"], st["clean_logits"].float().argmax(1) == st["targets"])
        buffered.add_step(**st)
    assert buffered.result() == by_step.result()  # identical floats, not just close
    assert buffered.n == by_step.n == sum(len(st["targets"]) for st in steps)
    assert tracker.total_events == tracker_by_step.total_events > 0
    assert tracker.epoch_rate() == tracker_by_step.epoch_rate()
    assert torch.equal(tracker.forgetting_counts(), tracker_by_step.forgetting_counts())
    assert torch.equal(tracker.presented(), tracker_by_step.presented())


def test_flush_returns_each_steps_metrics() -> None:
    agg = EpochAggregator()
    agg.add_step(CLEAN, TARGETS, PERTURBED, clean_loss=torch.tensor(1.0))
    agg.add_step(PERTURBED, TARGETS, CLEAN)
    assert agg.flush() == [
        step_metrics(CLEAN, TARGETS, PERTURBED, clean_loss=torch.tensor(1.0)),
        step_metrics(PERTURBED, TARGETS, CLEAN),
    ]
    assert agg.flush() == []
    # A clean-only step cannot join the buffer's SAM steps: they are computed when it comes.
    agg.add_step(CLEAN, TARGETS, PERTURBED)
    agg.add_step(CLEAN, TARGETS)
    assert agg.flush() == [step_metrics(CLEAN, TARGETS)]
    assert agg.n == 16


def test_buffer_flushes_by_itself_when_full() -> None:
    idx = torch.arange(4)
    tracker = ForgettingTracker(4)
    agg = EpochAggregator(tracker, max_steps=3)
    for _ in range(2):
        agg.add_step(CLEAN, TARGETS, PERTURBED, indices=idx)
    assert not tracker.presented().any()  # buffered: nothing computed yet
    agg.add_step(CLEAN, TARGETS, PERTURBED, indices=idx)
    assert tracker.presented().all()
    # 2 examples x 2 classes x 2 passes = 8 logits per step: full after two steps.
    tracker = ForgettingTracker(4)
    agg = EpochAggregator(tracker, max_logits=16)
    agg.add_step(CLEAN[:2, :2], TARGETS[:2] % 2, PERTURBED[:2, :2], indices=idx[:2])
    assert not tracker.presented().any()
    agg.add_step(CLEAN[:2, :2], TARGETS[:2] % 2, PERTURBED[:2, :2], indices=idx[2:])
    assert tracker.presented().all()


def test_reset_forgets_metrics_but_feeds_the_tracker() -> None:
    tracker = ForgettingTracker(4)
    agg = EpochAggregator(tracker)
    agg.add_step(CLEAN, TARGETS, indices=torch.arange(4))
    agg.reset()
    assert agg.result() == {} and agg.n == 0
    assert tracker.presented().all()


def test_add_step_checks_its_input_at_once() -> None:
    with pytest.raises(ValueError, match="perturbed_logits"):
        EpochAggregator().add_step(CLEAN, TARGETS, PERTURBED[:2])
    with pytest.raises(ValueError, match="targets"):
        EpochAggregator().add_step(CLEAN, TARGETS[:3])
    with pytest.raises(ValueError, match="indices"):
        EpochAggregator().add_step(CLEAN, TARGETS, indices=torch.arange(4))
    with pytest.raises(ValueError, match="indices"):
        EpochAggregator(ForgettingTracker(4)).add_step(CLEAN, TARGETS)
    with pytest.raises(ValueError, match="indices"):
        EpochAggregator(ForgettingTracker(4)).add_step(CLEAN, TARGETS, indices=torch.arange(3))
    with pytest.raises(TypeError):
        EpochAggregator(ForgettingTracker(4)).add_step(CLEAN, TARGETS, indices=torch.zeros(4))
    with pytest.raises(ValueError, match="max_steps"):
        EpochAggregator(max_steps=0)


def test_add_step_keeps_no_graph() -> None:
    logits = CLEAN.clone().requires_grad_(True)
    loss = F.cross_entropy(logits, TARGETS)
    agg = EpochAggregator()
    agg.add_step(logits, TARGETS, logits * 2, clean_loss=loss)
    assert not any(t.requires_grad for t in agg._buffer[0][:3])
    assert not agg._buffer[0].losses[0].requires_grad
    assert agg.result()["train_loss"] == pytest.approx(loss.item())
    assert logits.grad is None


def _sequential_reference(steps: list[tuple[list[int], list[bool]]], n: int) -> tuple:
    """Example forgetting by hand, one presentation at a time."""
    last: list[bool | None] = [None] * n
    per_example, comparable = [0] * n, 0
    for idx, correct in steps:
        for i, c in zip(idx, correct):
            comparable += last[i] is not None
            per_example[i] += last[i] is True and not c
            last[i] = c
    return per_example, comparable


def test_update_steps_counts_what_the_steps_one_by_one_count() -> None:
    gen = torch.Generator().manual_seed(1)
    n, batch = 12, 5
    steps = [
        (torch.randperm(n, generator=gen)[:batch], torch.rand(batch, generator=gen) < 0.6)
        for _ in range(20)
    ]
    one_by_one, together = ForgettingTracker(n), ForgettingTracker(n)
    for idx, correct in steps:
        one_by_one.update(idx, correct)
    for chunk in (steps[:7], steps[7:]):
        together.update_steps(torch.stack([i for i, _ in chunk]), torch.stack([c for _, c in chunk]))
    per_example, comparable = _sequential_reference(
        [(i.tolist(), c.tolist()) for i, c in steps], n
    )
    for t in (one_by_one, together):
        assert t.forgetting_counts().tolist() == per_example
        assert t.total_events == sum(per_example) > 0
        assert t.epoch_rate() == sum(per_example) / comparable


def test_index_repeated_in_a_batch_compares_with_the_previous_batch() -> None:
    t = ForgettingTracker(2)
    t.update_steps(
        torch.tensor([[0, 1], [0, 0], [0, 1]]),
        torch.tensor([[True, True], [False, False], [True, False]]),
    )
    # Step 2: both presentations of 0 compare with step 1 (correct): two events.
    # Step 3: 0 compares with step 2 (wrong): none; 1 compares with step 1 (correct): one.
    assert t.forgetting_counts().tolist() == [2, 1]
    assert t.epoch_rate() == 3 / 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_buffered_steps_on_cuda_match_cpu() -> None:
    steps = _random_steps(2)
    results, trackers = [], []
    for dev in ("cpu", "cuda"):
        tracker = ForgettingTracker(40)
        agg = EpochAggregator(tracker, max_steps=8)
        for st in steps:
            agg.add_step(**{k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in st.items()})
        results.append(agg.result())
        trackers.append(tracker)
    assert results[1] == pytest.approx(results[0], rel=1e-5)
    assert torch.equal(trackers[1].forgetting_counts(), trackers[0].forgetting_counts())
    assert trackers[1].epoch_rate() == trackers[0].epoch_rate()
