"""User model factories given as 'package.module:function'."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from samtune.errors import ConfigError
from samtune.models import build_model

FACTORY_SOURCE = """
from torch import nn

CALLS = []

def make(input_shape, num_classes):
    CALLS.append((input_shape, num_classes))
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))

def not_a_module(input_shape, num_classes):
    return "nope"

class Builders:
    @staticmethod
    def tiny(input_shape, num_classes):
        return nn.Linear(input_shape[0], num_classes)

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Write a uniquely named factory module under tmp_path and put it on sys.path."""
    name = f"user_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FACTORY_SOURCE))
    (tmp_path / "broken_user_mod.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)
    sys.modules.pop("broken_user_mod", None)


def test_factory_is_imported_and_called(user_module: str) -> None:
    model = build_model(f"{user_module}:make", (6,), 3)
    assert isinstance(model, nn.Sequential)
    assert model(torch.randn(2, 6)).shape == (2, 3)
    assert sys.modules[user_module].CALLS == [((6,), 3)]


def test_dotted_attribute(user_module: str) -> None:
    assert isinstance(build_model(f"{user_module}:Builders.tiny", (6,), 3), nn.Linear)


def _one_line_error(spec: str, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        build_model(spec, (6,), 3, **kwargs)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg
    assert spec in msg
    return msg


@pytest.mark.parametrize("spec", [":make", "pkg.mod:", "a:b:c", "pkg.mod: "])
def test_malformed_spec(spec: str) -> None:
    assert "package.module:function" in _one_line_error(spec)


def test_missing_module() -> None:
    assert "PYTHONPATH" in _one_line_error("no_such_samtune_module_xyz:make")


def test_module_that_fails_to_import(user_module: str) -> None:
    assert "boom second line" in _one_line_error("broken_user_mod:make")


def test_missing_attribute(user_module: str) -> None:
    assert "'missing'" in _one_line_error(f"{user_module}:missing")


def test_not_callable(user_module: str) -> None:
    assert "callable" in _one_line_error(f"{user_module}:NOT_CALLABLE")


def test_factory_must_return_a_module(user_module: str) -> None:
    assert "nn.Module" in _one_line_error(f"{user_module}:not_a_module")


def test_batchnorm_cannot_be_forced_on_a_factory(user_module: str) -> None:
    assert "batchnorm" in _one_line_error(f"{user_module}:make", batchnorm=True)


def test_builtin_names_do_not_import_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("importlib.import_module must not be called for built-in names")

    monkeypatch.setattr(importlib, "import_module", fail)
    build_model("mlp", (6,), 3)
    with pytest.raises(ConfigError):
        build_model("os", (6,), 3)
