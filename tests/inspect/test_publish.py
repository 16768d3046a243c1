"""``publish``: per-trial curves, the recommendation, the note and the figures, idempotently."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna_dashboard import get_note, save_note

import samtune
from samtune.inspect import curves_csv, publish
from samtune.inspect._publish import FIGURES
from samtune.inspect._summary import NOTE_HEADING
from tests.inspect.conftest import make_synthetic


def _read(store_dir, artifact_id) -> bytes:
    with FileSystemArtifactStore(store_dir).open_reader(artifact_id) as fh:
        return fh.read()


def _trial_artifacts(study) -> dict[int, list[dict]]:
    """trial id -> artifact metadata, as optuna-dashboard lists them."""
    from optuna_dashboard.artifact._backend import list_trial_artifacts

    attrs = study._storage.get_study_system_attrs(study._study_id)
    return {t._trial_id: list_trial_artifacts(attrs, study._storage.get_trial_system_attrs(t._trial_id), t)
            for t in study.trials}


def test_curves_csv_has_every_metric_per_epoch_and_blank_non_finite():
    history = [{"epoch": 1, "val_acc": 0.5, "flip_rate": 0.25, "forgetting_rate": 0.0, "zeta": 3.0,
                "bias_perturbed": None},
               {"epoch": 2, "val_acc": 0.75, "flip_rate": 0.125, "forgetting_rate": 0.1, "zeta": 4.0,
                "bias_perturbed": 0.5}]
    text = curves_csv(history)
    assert text.splitlines()[0] == "epoch,val_acc,forgetting_rate,flip_rate,bias_perturbed,zeta"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [float(r["val_acc"]) for r in rows] == [0.5, 0.75]
    assert [float(r["flip_rate"]) for r in rows] == [0.25, 0.125]
    assert rows[0]["bias_perturbed"] == "" and rows[1]["bias_perturbed"] == "0.5"


def test_publish_attaches_curves_note_and_figures(fresh, tmp_path):
    study = fresh.load()
    done = publish(study, tmp_path / "artifacts")
    trials = study.trials
    assert done.artifacts_added == len(trials) + 1  # one CSV per trial, plus recommendation.json
    assert done.note_saved and done.figures == list(FIGURES)
    listed = _trial_artifacts(study)
    for t in trials:
        (meta,) = listed[t._trial_id]
        assert meta["filename"] == f"trial-{t.number}-curves.csv" and meta["mimetype"] == "text/csv"
        stored = _read(tmp_path / "artifacts", meta["artifact_id"]).decode()
        rows = list(csv.DictReader(io.StringIO(stored)))
        assert [float(r["val_acc"]) for r in rows] == [h["val_acc"] for h in t.user_attrs["history"]]
        assert "forgetting_rate" in rows[0]
        if t.user_attrs["config"]["variant"] != "sgd":
            assert [float(r["flip_rate"]) for r in rows] == [h["flip_rate"] for h in t.user_attrs["history"]]
    from optuna.artifacts import get_all_artifact_meta

    (rec_meta,) = get_all_artifact_meta(study)
    assert json.loads(_read(tmp_path / "artifacts", rec_meta.artifact_id)) == study.user_attrs["recommendation"]

    note = get_note(study)
    rec = study.user_attrs["recommendation"]
    assert note.startswith(NOTE_HEADING)
    for text in (rec["verdict"], rec["summary"], "baseline", "samtune.load_recommendation(",
                 "samtune.build_optimizer(model, rec.config", "SAMConfig.from_dict("):
        assert text in note
    graphs = study._storage.get_study_system_attrs(study._study_id)
    for graph_id in FIGURES:
        assert f"dashboard:plot_data:{graph_id}:0" in graphs


def test_publish_twice_changes_nothing(fresh, tmp_path):
    study = fresh.load()
    publish(study, tmp_path / "a")
    attrs = study._storage.get_study_system_attrs(study._study_id)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    again = publish(study, tmp_path / "a")
    assert (again.artifacts_added, again.artifacts_rewritten, again.note_saved) == (0, 0, False)
    assert study._storage.get_study_system_attrs(study._study_id) == attrs  # note version too
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == files


def test_publish_to_another_artifact_dir_rewrites_the_files_not_the_entries(fresh, tmp_path):
    study = fresh.load()
    first = publish(study, tmp_path / "a")
    moved = publish(study, tmp_path / "b")
    assert moved.artifacts_added == 0 and moved.artifacts_rewritten == first.artifacts_added
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in (tmp_path / "b").iterdir())


def test_publish_keeps_the_users_text_and_replaces_its_own_part(synthetic, tmp_path):
    save_note(synthetic, "My own notes: try a bigger model.")
    publish(synthetic, tmp_path)
    rec = dict(synthetic.user_attrs["recommendation"], summary="a changed summary")
    synthetic.set_user_attr("recommendation", rec)
    assert publish(synthetic, tmp_path).note_saved
    note = get_note(synthetic)
    assert note.startswith("My own notes: try a bigger model.\n\n" + NOTE_HEADING)
    assert note.count(NOTE_HEADING) == 1 and "a changed summary" in note


def test_note_without_recommendation_says_so(tmp_path):
    study = make_synthetic(recommendation=False)
    done = publish(study, tmp_path)
    assert "no recommendation yet" in get_note(study)
    assert done.artifacts_added == len(study.trials)  # curves only, no recommendation.json


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def _model_and_loader():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    loader = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(2)]
    return {"model": model, "loader": loader, "total_steps": 2}


def test_the_notes_inline_snippet_builds_the_recommended_optimizer(synthetic, tmp_path):
    publish(synthetic, tmp_path)
    inline = _python_blocks(get_note(synthetic))[1]
    scope = _model_and_loader()
    exec(inline, scope)  # the snippet as a user would paste it
    rec = synthetic.user_attrs["recommendation"]
    assert scope["config"] == samtune.SAMConfig.from_dict(rec["config"])
    assert isinstance(scope["optimizer"], samtune.SAMOptimizer)
    assert scope["out"].perturbed_loss is not None  # a SAM step ran: two passes


def test_the_notes_file_snippet_loads_the_written_recommendation(made, fresh, tmp_path):
    if not hasattr(samtune, "load_recommendation"):
        pytest.skip("samtune.load_recommendation does not exist yet")
    study = fresh.load()
    publish(study, tmp_path / "a")
    from_file = _python_blocks(get_note(study))[0]
    path = str(made.root / "out" / "recommendation.json")  # the search ran with --out
    from_file = re.sub(r'load_recommendation\("[^"]*"\)', f"load_recommendation({path!r})", from_file)
    scope = _model_and_loader()
    exec(from_file, scope)
    assert isinstance(scope["optimizer"], samtune.SAMOptimizer)
