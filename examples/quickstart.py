"""Quickstart: search SAM configurations on a built-in data set, then apply the recommendation.

    python examples/quickstart.py                 # about a minute on 2 CPU cores
    python examples/quickstart.py --trials 4 --epochs 2
"""

from __future__ import annotations

import argparse
import tempfile

import torch

import samtune
from samtune.data import load_data
from samtune.models import build_model
from samtune.train import TrainConfig, evaluate, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="builtin:digits")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=None, help="study folder (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="samtune-quickstart-")

    # 1. search: the same as `samtune search --data builtin:digits`, as a call
    rec = samtune.search(args.data, trials=args.trials, epochs=args.epochs, space="quick",
                         storage=f"sqlite:///{out}/quickstart.db", study="quickstart", out=out)
    print(f"verdict: {rec.verdict}\n{rec.summary}")

    # 2. apply: train a fresh model with the recommended optimizer
    data = load_data(args.data)
    torch.manual_seed(0)
    model = build_model(None, data.input_shape, data.num_classes)
    result = train(model, data, rec.config, TrainConfig(epochs=args.epochs))
    test_acc, _ = evaluate(model, data.x_test, data.y_test)
    print(f"{rec.config.describe()}: test accuracy {test_acc:.4f} after {result.epochs_trained} epochs")


if __name__ == "__main__":
    main()
