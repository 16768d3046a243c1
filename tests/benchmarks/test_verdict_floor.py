"""benchmarks/verdict_floor.py: the oracle's confirmation power on a hand-made bank."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.benchmarks._quick import BENCHMARKS, load

if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from bank import Cell, Store  # noqa: E402
from bank.store import encode_u8  # noqa: E402

floor = load("verdict_floor")
N = 400
Y = np.arange(N) % 2
BASE = Cell("sgd", 0.1)
SAM = Cell("sam", 0.1, 0.05)


def _run(cell: Cell, seed: int, n_right: int, rng: np.random.Generator) -> dict:
    pred = 1 - Y  # n_right examples right, which ones drawn per seed
    right = rng.choice(N, n_right, replace=False)
    pred[right] = Y[right]
    return {"type": "run", "key": cell.key, "cell": cell.to_dict(), "seed": seed,
            "history": {"val_acc": [0.5, n_right / N]}, "pred": encode_u8(pred)}


def _store(tmp_path, sam_right: list[int], base_right: list[int]) -> Store:
    s = Store(tmp_path / "hand.jsonl.gz")
    s.append({"type": "task", "name": "hand", "epochs": 2, "y_test": encode_u8(Y)})
    rng = np.random.default_rng(0)
    for seed, (a, b) in enumerate(zip(sam_right, base_right)):
        s.append(_run(SAM, seed, a, rng))
        s.append(_run(BASE, seed, b, rng))
    s.append({"type": "cost", "key": "sgd", "ratio": 1.0})
    s.append({"type": "cost", "key": SAM.cost_key, "ratio": 2.0})
    return s


def test_a_gain_far_beyond_the_noise_is_seen_at_two_seeds_and_costs_two_pairs_of_runs(tmp_path):
    s = _store(tmp_path, [360, 362, 358, 361], [240, 243, 238, 241])  # +30 pp every seed
    out = floor.store_floor(s, draws=50, seed=0)
    (cell,) = out["cells"]
    assert out["sam_helps"] and cell["cell"] == SAM.key
    assert cell["power"] == {2: 1.0, 3: 1.0}  # 4 seeds: n = 4 is a single draw, not a sample
    assert cell["n90"] == 2 and not cell["n90_projected"] and cell["runs90"] == pytest.approx(6.0)


def test_no_gain_is_rarely_called_use_and_has_no_n90(tmp_path):
    s = _store(tmp_path, [300, 304, 296, 300], [300, 296, 304, 300])  # the same accuracy
    out = floor.store_floor(s, draws=50, seed=0)
    (cell,) = out["cells"]
    assert not out["sam_helps"]
    assert max(cell["power"].values()) <= 0.1
    assert cell["n90"] is None and cell["runs90"] is None


def test_a_small_gain_needs_more_seeds_than_the_bank_holds_and_is_projected(tmp_path):
    # +1.5 pp on 400 examples whose right answers differ by seed: se about 3 pp at 2 seeds
    s = _store(tmp_path, [306, 306, 306, 306], [300, 300, 300, 300])
    (cell,) = floor.store_floor(s, draws=50, seed=0)["cells"]
    assert max(cell["power"].values()) < 0.9
    assert cell["n90_projected"] and cell["n90"] is not None and cell["n90"] > 3
    assert cell["runs90"] == pytest.approx(3 * cell["n90"])
