"""The progress line of a finished trial."""

from __future__ import annotations

import io

import optuna

from samtune.search import _progress
from samtune.search._progress import REASON_WIDTH, EpochProgress, Progress


def _line(reason: str) -> str:
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr("config_text", "sam rho=0.05")
    trial.set_user_attr("prune_reason", reason)
    frozen = study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    out = io.StringIO()
    Progress(target=4, stream=out)(study, frozen)
    return out.getvalue()


def test_a_long_prune_reason_is_clipped_at_a_word_boundary() -> None:
    reason = ("unlikely to be confirmed: P(final val_acc >= 0.981) = 0.25 < 0.5 at epoch 2 "
              "(0.981 is the bar to be confirmed; predicted 0.975 from 3 completed)")
    line = _line(reason)
    assert "pruned: unlikely to be confirmed: P(final val_acc >= 0.981) = 0.25 < 0.5 at epoch 2… |" in line
    shown = line.split("pruned: ", 1)[1].split(" | ")[0]
    assert len("pruned: " + shown) <= REASON_WIDTH


def test_a_short_prune_reason_is_shown_whole() -> None:
    assert "pruned: collapsed perturbation: flip rate 0.800 at epoch 2 | best -" in _line(
        "collapsed perturbation: flip rate 0.800 at epoch 2")


def test_slow_epochs_get_a_line_each_fast_ones_none(monkeypatch) -> None:
    lines: list[str] = []
    slow = EpochProgress(lines.append, "trial 3", epochs=4)
    slow.on_epoch_end(1, {"val_acc": 0.5})
    assert lines == []  # well under SLOW_EPOCH_S
    monkeypatch.setattr(_progress, "SLOW_EPOCH_S", 0.0)
    slow.on_epoch_end(2, {"val_acc": 0.75})
    assert len(lines) == 1 and lines[0].startswith("  trial 3 epoch 2/4: val_acc 0.7500 (0:00 per epoch")


def test_a_search_with_slow_epochs_reports_every_epoch(tiny, monkeypatch, capsys) -> None:
    from samtune.search import search

    monkeypatch.setattr(_progress, "SLOW_EPOCH_S", 0.0)
    search("builtin:wine", **{**tiny, "trials": 1, "epochs": 2, "confirm_seeds": 1, "progress": True})
    err = capsys.readouterr().err
    assert "trial 0 epoch 1/2: val_acc" in err and "trial 0 epoch 2/2: val_acc" in err
    assert "confirm 1/1 epoch 1/2: val_acc" in err and "confirm 1/1 epoch 2/2: val_acc" in err
