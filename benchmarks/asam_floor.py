"""What exact ASAM m-sharpness must pay beyond a base step, however it is computed.

ASAM perturbs micro-batch j by e_j = rho T^2 g_j / ||T g_j|| with T = |w| + eta elementwise.
Its weight part T^2 (delta_j^T a_j) is no longer of rank m, so the perturbed forward
x_j (W + E_j)^T needs each micro-batch's weight gradient G_j = delta_j^T a_j: either formed
(k = B / m tensors of the layer's size, one batched matmul with the flops of a full-batch
weight gradient) or contracted without forming it, at m times a full-batch matmul. The
cheaper way, counted here, still needs per step:

- a base step's forward, backward and update (the perturbed pass and the final gradient);
- the clean pass: a forward and the backward to every Linear output (no weight gradients);
- G_j for every layer (``torch.bmm`` into a buffer kept between steps);
- T G_j and its norm per micro-batch (one elementwise pass and one read over k x the weights);
- the perturbed forward and its input gradients through each micro-batch's own weights W + E_j
  (batched matmuls over k weight tensors), less the full-batch matmuls the base step already
  counts for them (``k-weight passes`` minus ``full-batch passes``).

Everything else (forming W + E_j from T G_j, the bias, the autograd and Python around it) only
adds to it, so the sum is a lower bound on an exact implementation that forms the micro-batch
weights. It times
each part side by side in interleaved rounds on one thread, on samtune's default MLP
(``build_model("mlp", (40,), 10)``, batch 128: the sizes of the step table in RESULTS.md), next
to samtune's own fused asam and sam steps at the same m.

    python benchmarks/asam_floor.py              # 15 rounds, prints medians and ratios
    python benchmarks/asam_floor.py --rounds 5 --json
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import _interleaved  # noqa: E402

MS = (32, 16, 8)
ETA = 0.01


def clean_pass(linears, x, y):
    """The clean forward and the backward to each Linear's output: inputs a and deltas."""
    acts, outs, h = [], [], x
    for i, lin in enumerate(linears):
        acts.append(h.detach())
        z = F.linear(h, lin.weight, lin.bias)
        outs.append(z)
        h = F.relu(z) if i < len(linears) - 1 else z
    loss = F.cross_entropy(h, y, reduction="sum")
    return acts, torch.autograd.grad(loss, outs)


def main(argv: list[str] | None = None) -> int:
    args = _interleaved.parse_args(__doc__, argv)
    if args is None:
        return 2

    from samtune.optim import SAMConfig, build_optimizer

    model, x, y = _interleaved.default_mlp()
    linears = [mod for mod in model if isinstance(mod, torch.nn.Linear)]
    acts, deltas = clean_pass(linears, x.flatten(1), y)
    batch = x.shape[0]

    jobs = {"base": _interleaved.sgd_step(copy.deepcopy(model), x, y, lr=0.01, momentum=0.9),
            "clean pass": lambda: clean_pass(linears, x.flatten(1), y)}

    def full_batch() -> None:
        for a, d, lin in zip(acts, deltas, linears):
            a @ lin.weight.detach().T
            d @ lin.weight.detach()

    jobs["full-batch passes"] = full_batch
    for m in MS:
        k = batch // m
        a_k = [a.reshape(k, m, -1) for a in acts]
        d_k = [d.reshape(k, m, -1) for d in deltas]
        bufs = [torch.empty(k, lin.out_features, lin.in_features) for lin in linears]
        tg = [torch.empty_like(b) for b in bufs]  # T G_j apart: G_j is not scaled again and again
        t = [lin.weight.detach().abs() + ETA for lin in linears]

        def g_j(a_k=a_k, d_k=d_k, bufs=bufs) -> None:
            for a, d, buf in zip(a_k, d_k, bufs):
                torch.bmm(d.mT, a, out=buf)

        def t_norm(bufs=bufs, tg=tg, t=t) -> None:
            for buf, out, tw in zip(bufs, tg, t):
                torch.linalg.vector_norm(torch.mul(buf, tw, out=out), dim=(1, 2))

        def k_weights(a_k=a_k, d_k=d_k, bufs=bufs) -> None:
            for a, d, buf in zip(a_k, d_k, bufs):
                torch.bmm(a, buf.mT)  # forward at W + E_j
                torch.bmm(d, buf)  # the input gradient through W + E_j

        jobs[f"G_j m={m}"] = g_j
        jobs[f"T G_j, norm m={m}"] = t_norm
        jobs[f"k-weight passes m={m}"] = k_weights
        for variant, rho in (("asam", 1.0), ("sam", 0.05)):
            own = copy.deepcopy(model)
            opt = build_optimizer(own, SAMConfig(variant=variant, rho=rho, m=m,
                                                 base_kwargs={"lr": 0.01, "momentum": 0.9}),
                                  msharp="fused")
            jobs[f"samtune {variant} m={m}"] = (
                lambda opt=opt, own=own: opt.train_step(own, x, y, F.cross_entropy))
    med = _interleaved.medians(jobs, args.rounds, args.steps, warmup=3)
    ratio = {name: med[name] / med["base"] for name in med}
    floor = {m: 1.0 + ratio["clean pass"] + ratio[f"G_j m={m}"] + ratio[f"T G_j, norm m={m}"]
             + max(0.0, ratio[f"k-weight passes m={m}"] - ratio["full-batch passes"]) for m in MS}
    result = {"model": "mlp 40-256-256-10, batch 128", "rounds": args.rounds,
              "median_s": med, "over_base": ratio, "asam_floor_over_base": floor,
              "torch": torch.__version__}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"default MLP, batch 128, one thread, median of {args.rounds} interleaved rounds")
    for name in jobs:
        print(f"  {name:<22} {1e3 * med[name]:8.3f} ms   {ratio[name]:5.2f}x base")
    for m in MS:
        print(f"  m={m:<3} asam floor >= "
              f"{floor[m]:.2f}x base; samtune's fused asam {ratio[f'samtune asam m={m}']:.2f}x, "
              f"sam {ratio[f'samtune sam m={m}']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
