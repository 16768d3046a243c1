"""Load a saved recommendation into a fresh training job.

    python examples/apply_recommendation.py studies/digits/recommendation.json
    python examples/apply_recommendation.py            # makes a small one first

Only the recommendation file is needed: it holds the SAMConfig and the budget it was proven with.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import samtune
from samtune.data import load_data
from samtune.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recommendation", nargs="?", help="recommendation.json/.yaml or its folder")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recommendation's")
    args = parser.parse_args()
    path = args.recommendation
    if path is None:  # make one quickly so the example runs on its own
        out = Path(tempfile.mkdtemp(prefix="samtune-apply-"))
        samtune.search("builtin:wine", trials=3, epochs=2, confirm_seeds=1, top_k=1, space="quick",
                       storage=f"sqlite:///{out}/wine.db", study="wine", out=str(out), progress=False)
        path = out / "recommendation.yaml"

    rec = samtune.load_recommendation(path)
    print(f"{rec.verdict}: {rec.config.describe()}")
    data = load_data(rec.dataset["path"])
    if data.fingerprint != rec.dataset["fingerprint"]:
        print("warning: the data changed since the recommendation was made")
    epochs = args.epochs or rec.train.get("epochs", 10)
    batch = rec.train.get("batch_size", 64)
    steps = len(data.x_train) // batch

    torch.manual_seed(0)
    model = build_model(None, data.input_shape, data.num_classes)
    optimizer = samtune.build_optimizer(model, rec.config, total_steps=steps * epochs)
    for _ in range(epochs):
        order = torch.randperm(len(data.x_train))
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            optimizer.train_step(model, data.x_train[idx], data.y_train[idx], F.cross_entropy)
    model.eval()
    with torch.no_grad():
        acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    print(f"test accuracy {acc:.4f} (the recommendation measured {rec.test_accuracy['mean']:.4f})")


if __name__ == "__main__":
    main()
