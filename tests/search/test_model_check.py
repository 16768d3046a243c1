"""A model that does not fit the data fails before the study starts, in one line."""

from __future__ import annotations

import sys
import textwrap

import optuna
import pytest
from torch import nn

from samtune.cli import main
from samtune.errors import ConfigError
from samtune.search import search


class Squeeze(nn.Module):
    def forward(self, x):
        return x.mean(-1)


@pytest.mark.parametrize("module, needles", [
    (nn.Sequential(nn.Conv1d(3, 8, 3), Squeeze()),
     ["3 channels", "Sequential (the module given)", "shape (4, 13)", "(N, 13)"]),
    (nn.Sequential(nn.Linear(13, 5)), ["5 outputs per example", "3 classes"]),
    (nn.Sequential(nn.LazyLinear(3)), ["lazy modules (LazyLinear)"]),
])
def test_a_module_that_does_not_fit_fails_in_one_line_before_any_trial(tiny, module, needles):
    with pytest.raises(ConfigError) as err:
        search("builtin:wine", module=module, **tiny)
    text = str(err.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text
    assert "tiny" not in {s.study_name for s in optuna.get_all_study_summaries(tiny["storage"])}


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(textwrap.dedent("""
        from torch import nn

        def one_argument(n_features):
            return nn.Linear(n_features, 3)

        def too_wide(input_shape, num_classes):
            return nn.Linear(input_shape[0], num_classes + 2)

        def fits(input_shape, num_classes):
            return nn.Linear(input_shape[0], num_classes)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("user_models", None)


@pytest.mark.parametrize("factory, needles", [
    ("one_argument", ["takes (n_features)", "function(input_shape, num_classes)"]),
    ("too_wide", ["model 'user_models:too_wide' returns 5 outputs per example", "3 classes"]),
])
def test_a_factory_that_does_not_fit_is_a_usage_error(factories, tmp_path, capsys, factory, needles):
    code = main(["search", "--data", "builtin:wine", "--model", f"user_models:{factory}",
                 "--storage", f"sqlite:///{tmp_path / 's.db'}", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    for needle in needles:
        assert needle in err


def test_a_factory_that_fits_passes_the_check(factories, tiny):
    rec = search("builtin:wine", **{**tiny, "model": "user_models:fits", "trials": 1,
                                    "confirm_seeds": 1, "epochs": 1})
    assert rec.train["model"] == "user_models:fits"
