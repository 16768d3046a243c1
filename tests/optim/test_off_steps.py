"""Steps that do not perturb (rho 0, perturbation schedules): the base optimizer's step, one pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samtune import SAMConfig, build_optimizer, list_variants
from tests.optim.conftest import mlp

PERTURBING = [v for v in list_variants() if v != "sgd"]
BASE = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}


def _forwards(model) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def _plain_sgd(batch, bn: bool, steps: int):
    ref = mlp(bn=bn)
    opt = torch.optim.SGD(ref.parameters(), **BASE)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(ref(batch[0]), batch[1]).backward()
        opt.step()
    return ref


def _assert_same_state(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name  # weights and BatchNorm statistics, bit for bit


@pytest.mark.parametrize("m", [None, 8, 12])
@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("variant", PERTURBING)
def test_rho_zero_step_is_a_plain_sgd_step(variant, bn, m, batch):
    model = mlp(bn=bn)
    opt = build_optimizer(model, SAMConfig(variant=variant, rho=0.0, m=m, base_kwargs=BASE))
    calls = _forwards(model)
    for _ in range(3):
        out = opt.train_step(model, *batch)
    assert calls[0] == 3  # one forward per step: no ascent, no second pass
    assert out.perturbed_loss is None and out.perturbed_outputs is None
    assert opt.sam_step == 3
    _assert_same_state(model, _plain_sgd(batch, bn, 3))


@pytest.mark.parametrize("variant", ["sam", "asam", "gsam", "randsam"])
def test_rho_zero_closure_step_calls_the_closure_once(variant, batch):
    model = mlp(bn=True)
    opt = build_optimizer(model, SAMConfig(variant=variant, rho=0.0, base_kwargs=BASE))
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = F.cross_entropy(model(batch[0]), batch[1])
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
    assert len(calls) == 2
    _assert_same_state(model, _plain_sgd(batch, True, 2))


def test_a_schedule_that_reaches_rho_zero_skips_that_step(batch):
    model = mlp()
    cfg = SAMConfig(variant="sam", rho=0.1, schedule="linear", base_kwargs=BASE)
    opt = build_optimizer(model, cfg, total_steps=3)
    calls = _forwards(model)
    outs = [opt.train_step(model, *batch) for _ in range(3)]
    assert calls[0] == 2 + 2 + 1  # rho 0.1, 0.05, then 0: the last step is one pass
    assert [o.perturbed_loss is None for o in outs] == [False, False, True]


def test_one_group_with_rho_still_perturbs(batch):
    model = mlp()
    first, second = list(model.children())[0], list(model.children())[-1]
    groups = [{"params": first.parameters(), "rho": 0.0}, {"params": second.parameters(), "rho": 0.1}]
    opt = build_optimizer(groups, SAMConfig(variant="sam", rho=0.1, base_kwargs=BASE))
    assert opt.train_step(model, *batch).perturbed_loss is not None


SCHEDULES = [
    ("periodic", {"every": 3}, [0, 3]),
    ("late", {"start": 0.5}, [3, 4, 5]),
    ("stochastic", {"p": 0.5, "seed": 1}, None),
]


@pytest.mark.parametrize("m", [None, 8])
@pytest.mark.parametrize("name, kwargs, expected", SCHEDULES)
def test_perturbation_schedule_known_steps_and_off_steps_are_base_steps(name, kwargs, expected, m, batch):
    """On steps equal the same SAM step, off steps the same optimizer with rho set to 0."""
    cfg = SAMConfig(variant="sam", rho=0.1, m=m, base_kwargs=BASE, perturb=name, perturb_kwargs=kwargs)
    model, ref = mlp(), mlp()
    opt = build_optimizer(model, cfg, total_steps=6)
    ref_opt = build_optimizer(ref, SAMConfig(variant="sam", rho=0.1, m=m, base_kwargs=BASE))
    schedule = cfg.perturb_schedule(6)
    perturbed = []
    for t in range(6):
        for g in ref_opt.param_groups:
            g["rho"] = 0.1 if schedule(t) else 0.0
        out = opt.train_step(model, *batch)
        ref_opt.train_step(ref, *batch)
        if out.perturbed_loss is not None:
            perturbed.append(t)
        _assert_same_state(model, ref)
    assert perturbed == (expected if expected is not None else [t for t in range(6) if schedule(t)])
    assert opt.param_groups[0]["rho"] == 0.1  # the rho schedule's value, on off steps too


def test_perturbation_schedule_round_trips_and_default_dicts_are_unchanged():
    cfg = SAMConfig(variant="asam", rho=1.0, perturb="stochastic", perturb_kwargs={"p": 0.25, "seed": 2})
    d = cfg.to_dict()
    assert d["perturb"] == "stochastic" and d["perturb_kwargs"] == {"p": 0.25, "seed": 2}
    assert SAMConfig.from_dict(d) == cfg
    plain = SAMConfig(variant="sam").to_dict()
    assert "perturb" not in plain and "perturb_kwargs" not in plain  # as before they existed
    assert SAMConfig.from_dict(plain) == SAMConfig(variant="sam")
    assert "perturb=stochastic(p=0.25,seed=2)" in cfg.describe()


def test_late_takes_total_steps_from_build_optimizer(batch):
    model = mlp()
    cfg = SAMConfig(variant="sam", perturb="late", perturb_kwargs={"start": 0.5}, base_kwargs=BASE)
    opt = build_optimizer(model, cfg, total_steps=4)
    outs = [opt.train_step(model, *batch) for _ in range(4)]
    assert [o.perturbed_loss is not None for o in outs] == [False, False, True, True]
