"""The recommendation's stability check: how the gain behaves at neighbouring rho and m."""

from __future__ import annotations

import optuna

from samtune import SAMConfig
from samtune.search._recommendation import stability

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(trials: list[tuple[SAMConfig, float]]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for config, value in trials:
        t = study.ask()
        t.set_user_attr("config", config.to_dict())
        study.tell(t, value)
    return study


CHOSEN = SAMConfig(variant="sam", rho=0.1, m=16)


def test_neighbours_are_the_same_variant_at_nearby_rho_or_another_m():
    study = _study([
        (CHOSEN, 0.90),
        (SAMConfig(variant="sam", rho=0.15, m=16), 0.86),    # rho x1.5, same m: a neighbour
        (SAMConfig(variant="sam", rho=0.1, m=None), 0.84),   # same rho, another m: a neighbour
        (SAMConfig(variant="sam", rho=0.5, m=16), 0.70),     # rho x5: too far
        (SAMConfig(variant="asam", rho=0.1, m=16), 0.80),    # another variant
    ])
    got = stability(study, CHOSEN.to_dict(), baseline_val=0.85)
    assert got["n"] == 2
    assert sorted(n["val_accuracy"] for n in got["neighbours"]) == [0.84, 0.86]
    assert got["sharp"] is False  # one neighbour still beats the baseline


def test_a_gain_that_every_neighbour_loses_is_flagged_sharp():
    study = _study([(CHOSEN, 0.90), (SAMConfig(variant="sam", rho=0.06, m=16), 0.80),
                    (SAMConfig(variant="sam", rho=0.1, m=8), 0.79)])
    assert stability(study, CHOSEN.to_dict(), baseline_val=0.85)["sharp"] is True
    lonely = _study([(CHOSEN, 0.90)])
    assert stability(lonely, CHOSEN.to_dict(), baseline_val=0.85) == {"n": 0, "neighbours": []}
