"""benchmarks/replay_centres.py's lr moves, read from the stored bank."""

from __future__ import annotations

import math

from tests.benchmarks._quick import load


def test_lr_moves_cover_every_task_and_count_only_cells_the_bank_holds():
    replay = load("replay_centres")
    moves = replay.lr_moves()
    assert set(moves) == set(replay.TASKS)
    for row in moves.values():
        for label in ("x2", "/2"):
            gained, total = map(int, row[f"{label} gain"].split("/"))
            assert 0 <= gained <= total
            assert total == 0 or math.isfinite(row[f"{label} pp"])
    # signals-noise20's tuned baseline lr (2.56) sits next to where SAM diverges: lr x2 loses
    assert moves["signals-noise20"]["x2 pp"] < 0 < moves["signals-noise20"]["/2 pp"]
