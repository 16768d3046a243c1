"""Start-up: `samtune --help`, `--version` and usage errors load neither torch nor Optuna, and
the search command's flags and defaults come from SearchOptions."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import MISSING, fields

import pytest

from samtune.cli import build_parser
from samtune.search._options import SearchOptions, flag

HEAVY = ("torch", "torchvision", "optuna", "sklearn", "sqlalchemy")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().splitlines()[-1].removeprefix("loaded:").split(",") if m]


@pytest.mark.parametrize("code", [
    "import samtune",
    "import samtune.search",
    "from samtune.cli import build_parser; build_parser()",
    "from samtune.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass",
    "from samtune.cli import main\ntry:\n    main(['search', '--data', 'x', '--trials', '0'])\nexcept SystemExit:\n    pass",
])
def test_import_help_version_and_usage_errors_load_no_heavy_library(code):
    assert _loaded_after(code) == []


def test_public_names_still_work_lazily():
    import samtune

    assert samtune.list_variants()[:2] == ["sgd", "sam"]
    assert samtune.SAMConfig(variant="sam").variant == "sam"
    assert callable(samtune.search) and samtune.search.search.__name__ == "search"
    assert samtune.SearchOptions is SearchOptions
    for name in samtune.__all__:
        assert getattr(samtune, name) is not None
    with pytest.raises(AttributeError):
        samtune.no_such_name  # noqa: B018


def test_every_search_option_is_a_flag_with_the_dataclass_default():
    search = build_parser()._subparsers._group_actions[0].choices["search"]
    actions = {a.dest: a for a in search._actions}
    for f in fields(SearchOptions):
        if f.name == "progress":
            assert "quiet" in actions
            continue
        action = actions[f.name]
        assert flag(f.name) in action.option_strings
        default = f.default if f.default is not MISSING else f.default_factory()
        if default not in (None, ()):
            assert f"(default {default})" in action.help
    args = search.parse_args(["--data", "x"])
    assert set(vars(args)) - {"data", "quiet", "func"} == set()  # defaults are SearchOptions'
