"""What samtune's training loop costs beyond the optimizer step.

    python benchmarks/train_overhead.py [--rounds 7] [--json]

1. metrics_over_step: a SAM train_step plus the per-step forgetting metrics (flip rate, loss gap,
   target-probability drop, output bias at w and w+e) and example-forgetting tracking, over the
   same train_step alone. Target: <= 1.03.
2. loop_over_handwritten: one epoch of samtune.train.train (SGD baseline, no augmentation) over
   one epoch of a hand-written PyTorch loop with the same optimizer settings, batches, lr
   schedule and per-epoch validation. Target: <= 1.10.

builtin:digits with samtune's default CNN, one CPU thread. Configurations alternate within each
round and ratios are of medians from the same run.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from samtune import SAMConfig, build_optimizer
from samtune.data import load_data
from samtune.models import build_model
from samtune.schedules import lr_factor
from samtune.train import ForgettingTracker, TrainConfig, step_metrics, train

ROOT = Path(__file__).resolve().parents[1]


def handwritten_epoch(model, data, batch, lr, epochs_total, gen):
    """The loop a user would write: SGD with momentum, warm-up + cosine, validation per epoch."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    n = len(data.x_train)
    steps = n // batch
    total = steps * epochs_total
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total_steps=total, warmup_steps=min(steps, total // 10)))
    model.train()
    order = torch.randperm(n, generator=gen)
    for s in range(steps):
        idx = order[s * batch:(s + 1) * batch]
        opt.zero_grad()
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        loss.backward()
        opt.step()
        sched.step()
        if not math.isfinite(loss.item()):
            raise RuntimeError("diverged")
    model.eval()
    with torch.no_grad():
        out = model(data.x_val)
        acc = (out.argmax(1) == data.y_val).float().mean().item()
        F.cross_entropy(out, data.y_val).item()
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per timing block (part 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_data("builtin:digits")
    batch = 64
    torch.manual_seed(0)
    model0 = build_model(None, data.input_shape, data.num_classes)

    # 1. metrics overhead on the SAM step
    x, y = data.x_train[:batch], data.y_train[:batch]
    idx = torch.arange(batch)
    models = [copy.deepcopy(model0) for _ in range(2)]
    opts = [build_optimizer(m, SAMConfig(variant="sam")) for m in models]
    tracker = ForgettingTracker(len(data.x_train))

    def plain():
        opts[0].train_step(models[0], x, y)

    def with_metrics():
        out = opts[1].train_step(models[1], x, y)
        step_metrics(out.outputs, y, out.perturbed_outputs, clean_loss=out.loss,
                     perturbed_loss=out.perturbed_loss)
        tracker.update(idx, out.outputs.argmax(-1) == y)

    blocks = {"step": plain, "step+metrics": with_metrics}
    times = {k: [] for k in blocks}
    for f in blocks.values():
        for _ in range(5):
            f()
    for _ in range(args.rounds):
        for k, f in blocks.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                f()
            times[k].append((time.perf_counter() - t) / args.steps)

    # 2. samtune's loop vs a hand-written loop, one epoch each, alternating
    epochs = {"samtune": [], "handwritten": []}
    cfg = SAMConfig(variant="sgd", base_kwargs={"lr": 0.05})
    for r in range(args.rounds):
        m = copy.deepcopy(model0)
        t = time.perf_counter()
        train(m, data, cfg, TrainConfig(epochs=1, batch_size=batch, augment=False, seed=r))
        epochs["samtune"].append(time.perf_counter() - t)
        m = copy.deepcopy(model0)
        t = time.perf_counter()
        handwritten_epoch(m, data, batch, 0.05, 1, torch.Generator().manual_seed(r))
        epochs["handwritten"].append(time.perf_counter() - t)

    med = {k: statistics.median(v) for k, v in {**times, **epochs}.items()}
    result = {
        "metrics_over_step": med["step+metrics"] / med["step"],
        "loop_over_handwritten": med["samtune"] / med["handwritten"],
        "median_seconds": med,
        "targets": {"metrics_over_step": 1.03, "loop_over_handwritten": 1.10},
        "torch": torch.__version__,
    }
    out = ROOT / "benchmarks" / "results" / "train_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for key, target in result["targets"].items():
            verdict = "PASS" if result[key] <= target else "FAIL"
            print(f"{key:<24} {result[key]:.3f}  (target <= {target})  {verdict}")


if __name__ == "__main__":
    sys.exit(main())
