"""What a step returns when its batch does not divide into micro-batches of m: the two parts'
outputs joined, weighted by their examples (``samtune.optim._output.joined``), checked by hand
and against plain cross-entropy on the logits the step returns."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samtune import SAMConfig, build_optimizer
from samtune.optim._output import StepOutput, joined
from tests.optim.conftest import mlp


def _out(loss, rows, perturbed=True):
    logits = torch.full((rows, 2), float(loss))
    return StepOutput(torch.tensor(float(loss)), logits,
                      torch.tensor(10.0 * loss) if perturbed else None,
                      logits + 1 if perturbed else None)


def test_the_parts_losses_are_weighted_by_their_examples_and_their_logits_concatenated():
    out = joined(_out(1.0, 3), _out(5.0, 1), 3, 1)
    assert out.loss.item() == 2.0  # (3 x 1 + 1 x 5) / 4
    assert out.perturbed_loss.item() == 20.0  # (3 x 10 + 1 x 50) / 4
    assert out.outputs[:, 0].tolist() == [1.0, 1.0, 1.0, 5.0]
    assert out.perturbed_outputs[:, 0].tolist() == [2.0, 2.0, 2.0, 6.0]


@pytest.mark.parametrize("first_perturbed", [True, False])
def test_a_part_that_did_not_perturb_leaves_the_joined_perturbed_output_unknown(first_perturbed):
    a, b = _out(1.0, 3, first_perturbed), _out(5.0, 1, not first_perturbed)
    out = joined(a, b, 3, 1)
    assert out.perturbed_loss is None and out.perturbed_outputs is None
    assert out.loss.item() == 2.0


@pytest.mark.parametrize("variant", ["sam", "asam", "gsam", "obf"])
def test_a_remainder_batchs_losses_are_the_mean_cross_entropy_of_its_logits(variant):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 6, generator=g), torch.randint(0, 3, (10,), generator=g)
    model = mlp()
    opt = build_optimizer(model, SAMConfig(variant=variant, rho=0.5, m=4, base_kwargs={"lr": 0.1}))
    out = opt.train_step(model, x, y)  # micro-batches of 4, 4 and the rest, 2
    assert out.outputs.shape == out.perturbed_outputs.shape == (10, 3)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.outputs, y))
    torch.testing.assert_close(out.perturbed_loss, F.cross_entropy(out.perturbed_outputs, y))
    assert not torch.equal(out.perturbed_outputs, out.outputs)  # each micro-batch was perturbed
