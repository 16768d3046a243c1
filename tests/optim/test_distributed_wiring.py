"""DistributedDataParallel claims of the README, with two gloo processes: BatchNorm statistics
are broadcast from the first process before each train_step, and step(closure) on a DDP model
ascends along the global (all-reduced) gradient."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from samtune import build_optimizer
from tests.optim.test_distributed import WORLD, batches, config, model_and_seed

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed gloo")

WORKER = textwrap.dedent("""
    import sys
    import torch, torch.distributed as dist, torch.nn.functional as F
    from torch import nn
    from samtune import build_optimizer
    sys.path.insert(0, sys.argv[1])
    from test_distributed import batches, config, model_and_seed
    rank, world, init, out, mode, variant = sys.argv[2:8]
    rank, world = int(rank), int(world)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = model_and_seed()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = build_optimizer(model, config(variant, None))
    if mode == "broadcast":
        if rank == 1:  # statistics that drifted on this process only
            model[1].running_mean.fill_(5.0)
            model[1].running_var.fill_(3.0)
        x, y = batches()[0]
        opt.train_step(ddp, x[rank], y[rank])
    else:
        for x, y in batches():
            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(ddp(x[rank]), y[rank])
                loss.backward()
                return loss
            opt.step(closure)
    torch.save({"params": [p.detach() for p in model.parameters()],
                "buffers": [b.detach().clone() for b in model.buffers()]}, out)
    dist.barrier()  # no rank tears gloo down while the other still talks to it
    del ddp, opt  # the DDP reducer holds the process group: release it before tearing it down
    dist.destroy_process_group()
    # exit without C++ static destructors: gloo's threads joined there sometimes abort a
    # finished process ("terminate called without an active exception"), results already saved
    import os
    os._exit(0)
""")


def _run(tmp_path, mode, variant):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    here = str(Path(__file__).parent)
    outs = [tmp_path / f"rank{r}.pt" for r in range(WORLD)]
    procs = [subprocess.Popen([sys.executable, str(script), here, str(r), str(WORLD),
                               f"file://{tmp_path / 'pg'}", str(outs[r]), mode, variant],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(WORLD)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
    return [torch.load(out) for out in outs]


def test_batchnorm_statistics_are_broadcast_from_the_first_process(tmp_path):
    ranks = _run(tmp_path, "broadcast", "sam")
    for r, got in enumerate(ranks):
        # the reference: rank 0's statistics, updated by this process's own clean pass
        model = model_and_seed()
        opt = build_optimizer(model, config("sam", None))
        x, y = batches()[0]
        opt.train_step(model, x[r], y[r], update=False)
        for a, b in zip(got["buffers"], model.buffers()):
            torch.testing.assert_close(a, b.detach())
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["params"], ranks[1]["params"]))


@pytest.mark.parametrize("variant", ["sam", "asam"])
def test_step_closure_under_ddp_ascends_along_the_global_gradient(tmp_path, variant):
    ranks = _run(tmp_path, "closure", variant)
    # the reference: one process whose closure averages the two processes' losses (each
    # batch through the model on its own, as each DDP process normalizes its own batch)
    model = model_and_seed()
    opt = build_optimizer(model, config(variant, None))
    for x, y in batches():
        def closure():
            opt.zero_grad()
            loss = sum(F.cross_entropy(model(x[r]), y[r]) for r in range(WORLD)) / WORLD
            loss.backward()
            return loss
        opt.step(closure)
    for got in ranks:
        for a, b in zip(got["params"], model.parameters()):
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)
