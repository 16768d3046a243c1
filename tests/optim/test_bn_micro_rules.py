"""The m-versus-batch rule (``_micro``) and the BatchNorm policy (``_bn``), pinned directly."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from samtune.optim._bn import bn_modules, compose_running_stats, frozen_bn_stats
from samtune.optim._micro import batch_for, effective_m, split

# -- m versus the batch --------------------------------------------------------------------


@pytest.mark.parametrize(
    "m, batch, expected",
    [(16, 128, 16), (1, 8, 1), (63, 64, 63), (64, 64, None), (65, 64, None), (None, 64, None)],
)
def test_m_at_least_the_batch_means_the_whole_batch(m, batch, expected):
    """effective_m: m >= batch (m == batch included) acts as None, plain SAM; smaller m is kept."""
    assert effective_m(m, batch) == expected


@pytest.mark.parametrize(
    "batch, m, expected",
    [
        (128, 16, (8, 128, 0)),
        (37, 16, (2, 32, 5)),  # an epoch's last batch: two of 16, then 5 left over
        (17, 16, (1, 16, 1)),
        (15, 16, (1, 15, 0)),  # smaller than m: one micro-batch of the whole batch
        (16, 16, (1, 16, 0)),
        (10, 1, (10, 10, 0)),
        (64, None, (1, 64, 0)),
    ],
)
def test_split_gives_k_micro_batches_of_m_then_the_rest(batch, m, expected):
    """split: k micro-batches of m examples in the head, the remainder (< m) in ``rest``."""
    k, head, rest = split(batch, m)
    assert (k, head, rest) == expected
    assert head + rest == batch and rest < (m or batch)


@pytest.mark.parametrize(
    "batch, m, expected",
    [(100, 16, 96), (96, 16, 96), (31, 16, 16), (16, 16, 16), (8, 16, 8), (7, 1, 7), (64, None, 64)],
)
def test_batch_for_is_the_largest_multiple_of_m_not_above_the_batch(batch, m, expected):
    """batch_for: the largest batch <= ``batch`` that m divides; ``batch`` itself when m >= batch."""
    assert batch_for(batch, m) == expected


# -- BatchNorm policy ----------------------------------------------------------------------


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(),
        nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2), nn.BatchNorm1d(2, momentum=0.3),
    )


def test_bn_modules_lists_only_batchnorms_with_running_stats():
    """bn_modules: named BatchNorms that track running statistics; none for no model."""
    net = _bn_net()
    assert [name for name, _ in bn_modules(net)] == ["1", "5"]
    assert all(mod is net[int(name)] for name, mod in bn_modules(net))
    assert bn_modules(None) == []
    assert bn_modules(nn.Linear(2, 2)) == []


def test_frozen_bn_stats_normalizes_with_batch_stats_and_leaves_every_buffer():
    """Perturbed pass: batch statistics as in training, running stats and counter untouched."""
    net, twin = _bn_net(), _bn_net()
    net.train(), twin.train()
    x = torch.randn(8, 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with frozen_bn_stats(bn_modules(net)):
        out = net(x)
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name]), name
    torch.testing.assert_close(out, twin(x), rtol=0, atol=0)  # same output as an ordinary pass
    assert twin[1].num_batches_tracked.item() == 1  # the ordinary pass did count


def test_frozen_bn_stats_restores_tracking_even_when_the_body_raises():
    """The context restores each module's own track_running_stats flag, also after an error."""
    net = _bn_net()
    mods = bn_modules(net) + [("3", net[3])]  # one that never tracked stays off
    with pytest.raises(RuntimeError), frozen_bn_stats(mods):
        assert not any(mod.track_running_stats for _, mod in mods)
        raise RuntimeError("boom")
    assert [mod.track_running_stats for _, mod in mods] == [True, True, False]


def test_compose_running_stats_by_hand():
    """r <- (1 - mom) r + (r_j - (1 - mom) r0): 0 -> 0.5 -> 1.25 for batch means 1, 2, mom 0.5."""
    start = torch.tensor([0.0, 2.0])
    mom = 0.5
    means = torch.tensor([[1.0, 4.0], [2.0, 0.0]])
    alone = (1 - mom) * start + mom * means  # each micro-batch applied to the start alone
    out = compose_running_stats(start, alone, mom)
    torch.testing.assert_close(out, torch.tensor([1.25, 1.5]))
    assert torch.equal(start, torch.tensor([0.0, 2.0]))  # start is not modified in place


def test_compose_running_stats_equals_sequential_ghost_bn_updates():
    """Composed from per-micro-batch updates, the stats equal plain BN run micro-batch by micro-batch."""
    torch.manual_seed(1)
    bn = nn.BatchNorm1d(3, momentum=0.2)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    micro = torch.randn(4, 5, 3) * 2 + 1
    seq = copy.deepcopy(bn)
    for xj in micro:
        seq(xj)
    for stat in ("running_mean", "running_var"):
        r0 = getattr(bn, stat).clone()
        alone = []
        for xj in micro:
            one = copy.deepcopy(bn)
            one(xj)
            alone.append(getattr(one, stat))
        composed = compose_running_stats(r0, torch.stack(alone), bn.momentum)
        torch.testing.assert_close(composed, getattr(seq, stat))
