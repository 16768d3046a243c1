"""Issue 19's small things: study names, refusal text, SamSearch's fitted attributes, the run
record, no import cycle, no unused dependency."""

from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from samtune import NotFittedError, SAMConfig, SamSearch
from samtune.search._search import differences
from samtune.search._storage import default_study_name
from samtune.search._workers import RunRecord

ROOT = Path(__file__).parents[2]


def test_the_default_study_name_includes_the_model():
    assert default_study_name("builtin:digits") == "digits"
    assert default_study_name("builtin:digits", "resnet18") == "digits-resnet18"
    assert default_study_name("data/x.csv", "pkg.models:wide_net") == "x-pkg.models-wide_net"


def test_the_refusal_names_the_whole_model_and_shortens_only_digests():
    stored = defaultdict(lambda: None, {
        "fingerprint": "a" * 64, "space": "b" * 64, "epochs": 3, "batch_size": 16,
        "model": "my_company.models.vision:very_long_factory"})
    asked = defaultdict(lambda: None, {**stored, "fingerprint": "c" * 64,
                                       "model": "my_company.models.vision:other_factory"})
    text = "; ".join(differences(stored, asked))
    assert "model my_company.models.vision:very_long_factory vs my_company.models.vision:other_factory" in text
    assert f"data (fingerprint) {'a' * 12} vs {'c' * 12}" in text and "a" * 13 not in text


def test_sam_search_has_best_params_and_best_score(tmp_path):
    s = SamSearch(trials=2, epochs=1, confirm_seeds=1, top_k=1, space="quick",
                  storage=f"sqlite:///{tmp_path / 'x.db'}", study="x", out=str(tmp_path / "o"),
                  progress=False)
    for name in ("best_params_", "best_score_"):
        with pytest.raises(NotFittedError):
            getattr(s, name)
    s.fit("builtin:wine")
    assert SAMConfig.from_dict(s.best_params_) == s.best_config_
    assert s.best_score_ == s.recommendation_.test_accuracy["mean"] and 0 <= s.best_score_ <= 1


def test_the_run_record_is_one_dataclass_that_reads_old_records():
    old = {"data": "builtin:wine", "target": None, "seed": 0, "space": {}, "epochs": 2,
           "batch_size": 16, "model": "mlp", "pruner": "forgetting", "device": None,
           "threads": None, "trials": 3, "timeout": None, "fingerprint": "f"}  # 13 keys
    run = RunRecord.from_dict({**old, "some_future_key": 1})
    assert (run.trials, run.top_k, run.drop, run.end_time) == (3, 2, [], None)
    assert RunRecord.from_dict(run.to_dict()) == run


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_workers_do_not_import_the_search_module():
    assert "samtune.search._search" not in _imports(ROOT / "samtune/search/_workers.py")


def test_every_declared_dependency_is_imported():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    modules = {"scikit-learn": "sklearn", "pyyaml": "yaml", "pillow": "PIL",
               "optuna-dashboard": "optuna_dashboard"}
    used = set().union(*(_imports(p) for p in (ROOT / "samtune").rglob("*.py")))
    roots = {m.split(".")[0] for m in used}
    for dep in deps:
        name = re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0].lower()
        assert modules.get(name, name) in roots, f"{name} is a dependency that nothing imports"
