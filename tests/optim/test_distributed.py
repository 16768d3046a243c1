"""DistributedDataParallel: each process perturbs with its own micro-batches, one gradient
average per update (known answer: the loop on the concatenated global batch)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist
from torch import nn

from samtune import SAMConfig, build_optimizer

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed gloo")

WORLD, LOCAL, STEPS = 2, 16, 2

WORKER = textwrap.dedent("""
    import sys
    import torch, torch.distributed as dist
    from torch import nn
    from samtune import SAMConfig, build_optimizer
    sys.path.insert(0, sys.argv[1])
    from test_distributed import batches, config, model_and_seed
    rank, world, init, out, variant, m, msharp = sys.argv[2:9]
    rank, world = int(rank), int(world)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = model_and_seed()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = build_optimizer(model, config(variant, int(m) or None), msharp=msharp)
    for x, y in batches():
        opt.train_step(ddp, x[rank], y[rank])
    torch.save([p.detach() for p in model.parameters()], out)
    dist.barrier()  # no rank tears gloo down while the other still talks to it
    del ddp, opt  # the DDP reducer holds the process group: release it before tearing it down
    dist.destroy_process_group()
    # exit without C++ static destructors: gloo's threads joined there sometimes abort a
    # finished process ("terminate called without an active exception"), results already saved
    import os
    os._exit(0)
""")


def model_and_seed() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def config(variant: str, m: int | None) -> SAMConfig:
    return SAMConfig(variant=variant, rho=0.1, m=m, base_kwargs={"lr": 0.1, "momentum": 0.9})


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per step: (WORLD, LOCAL, 6) inputs and (WORLD, LOCAL) targets, one row per process."""
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(WORLD, LOCAL, 6, generator=g), torch.randint(0, 3, (WORLD, LOCAL), generator=g))
            for _ in range(STEPS)]


@pytest.mark.parametrize("variant, m, msharp", [("sam", 8, "auto"), ("gsam", 0, "loop")])
def test_ddp_is_m_sharpness_over_the_global_batch(tmp_path, variant, m, msharp):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    here = str(__import__("pathlib").Path(__file__).parent)
    init = f"file://{tmp_path / 'pg'}"
    outs = [tmp_path / f"rank{r}.pt" for r in range(WORLD)]
    procs = [subprocess.Popen([sys.executable, str(script), here, str(r), str(WORLD), init,
                               str(outs[r]), variant, str(m), msharp],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(WORLD)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
    ranks = [torch.load(out) for out in outs]

    # the reference: one process, the loop, micro-batches of m (m=None: each process's batch)
    model = model_and_seed()
    opt = build_optimizer(model, config(variant, m or LOCAL), msharp="loop")
    for x, y in batches():
        opt.train_step(model, x.reshape(-1, 6), y.reshape(-1))
    for r in ranks:
        for got, want in zip(r, model.parameters()):
            torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(ranks[0], ranks[1]))  # one step everywhere
