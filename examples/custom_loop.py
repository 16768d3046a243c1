"""Your own model, your own DataLoader, your own loop: samtune hands you the optimizer.

    python examples/custom_loop.py                # about a minute on 2 CPU cores
    python examples/custom_loop.py --budget 3 --epochs 2
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import samtune


class Net(nn.Module):
    """A model samtune has never seen."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, 64), nn.GELU(), nn.LayerNorm(64))
        self.head = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=10, help="search trials")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()
    storage = args.storage or f"sqlite:///{tempfile.mkdtemp(prefix='samtune-custom-')}/auto.db"

    x, y = load_breast_cancer(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    loader = DataLoader(TensorDataset(x, torch.tensor(y)), batch_size=32, shuffle=True)  # last batch: 25
    torch.manual_seed(0)
    model = Net(x.shape[1], 2)

    # searches on *this* model and data (or reuses a stored study made on both)
    auto = samtune.autoconfigure(model, loader, steps_per_epoch=len(loader), epochs=args.epochs,
                                 storage=storage, budget=args.budget, space="quick")
    print(auto.message)
    optimizer, scheduler = auto.optimizer, auto.scheduler

    for epoch in range(args.epochs):
        for xb, yb in loader:
            out = optimizer.train_step(model, xb, yb, F.cross_entropy)  # both passes, one update
            scheduler.step()
        print(f"epoch {epoch + 1}: loss {out.loss.item():.4f}")
    with torch.no_grad():
        acc = (model(x).argmax(1) == torch.tensor(y)).float().mean().item()
    print(f"training-set accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
