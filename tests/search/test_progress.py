"""The progress line of a finished trial."""

from __future__ import annotations

import io

import optuna

from samtune.search._progress import REASON_WIDTH, Progress


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
