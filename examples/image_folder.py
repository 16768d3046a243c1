"""Write a small image folder (one subfolder per class), then search it.

    python examples/image_folder.py               # about a minute on 2 CPU cores
    python examples/image_folder.py --trials 3 --epochs 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import samtune


def write_shapes(root: Path, per_class: int = 40, size: int = 16, seed: int = 0) -> Path:
    """Three classes of noisy 16x16 images: a bright square, a bright bar, a dark background."""
    rng = np.random.default_rng(seed)
    for name in ("square", "bar", "plain"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.normal(80, 45, (size, size, 3))
            r, c = rng.integers(2, size - 8, 2)
            if name == "square":
                img[r:r + 5, c:c + 5] += 45
            elif name == "bar":
                img[r:r + 2, 2:-2] += 45
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--dir", default=None, help="where to write the images and the study")
    args = parser.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="samtune-images-"))
    folder = write_shapes(base / "shapes")
    rec = samtune.search(str(folder), trials=args.trials, epochs=args.epochs, space="quick",
                         storage=f"sqlite:///{base}/shapes.db", study="shapes", out=str(base / "out"))
    print(f"{rec.verdict}: {rec.summary}")
    print(f"recommendation written to {base / 'out' / 'recommendation.json'}")


if __name__ == "__main__":
    main()
