"""``publish``: make a study rich in optuna-dashboard (curves, note, figures); idempotent."""

from __future__ import annotations

import csv
import io
import json
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial
from optuna_dashboard import get_note, save_note, save_plotly_graph_object

from samtune.errors import SamtuneError
from samtune.inspect import _figures
from samtune.inspect._summary import merge_note, study_note

# Per-epoch columns first in this order; any other numeric key of the history follows, sorted.
CURVE_COLUMNS = ("epoch", "val_acc", "val_loss", "train_acc", "train_loss", "forgetting_rate",
                 "flip_rate", "loss_gap", "p_drop", "bias_clean", "bias_perturbed", "lr", "rho")
# The dashboard figures, by graph-object id: a fixed id overwrites, so re-publishing never adds.
FIGURES: dict[str, Callable[[Sequence[FrozenTrial]], go.Figure]] = {
    "samtune-forgetting-vs-accuracy": _figures.forgetting_vs_accuracy,
    "samtune-best-per-variant": _figures.best_per_variant,
    "samtune-trial-states": _figures.trial_states,
}
RECOMMENDATION_FILE = "recommendation.json"
# optuna.artifacts.upload_artifact refuses finished trials (their system attributes are frozen),
# and samtune publishes after the search. optuna-dashboard also lists as a trial's artifacts the
# metadata stored under this study system-attribute prefix (its own uploads' format), and
# study attributes stay writable: the curves go there.
_DASHBOARD_TRIAL_ARTIFACT = "dashboard:artifacts:{trial_id}:"
_OPTUNA_ARTIFACT = "artifacts:"  # optuna.artifacts' prefix (trial or study system attributes)


@dataclass
class Published:
    """What ``publish`` changed; all zero / empty when the study was already published."""

    artifacts_added: int = 0  # new artifact entries (a re-run adds none)
    artifacts_rewritten: int = 0  # entries whose stored file was missing or stale
    note_saved: bool = False  # the note changed
    figures: list[str] = field(default_factory=list)  # graph-object ids saved (always all)


def curves_csv(history: Sequence[dict[str, Any]]) -> str:
    """A trial's per-epoch history as CSV; a missing or non-finite value is an empty cell."""
    keys = {k for row in history for k, v in row.items() if isinstance(v, int | float) or v is None}
    columns = [c for c in CURVE_COLUMNS if c in keys] + sorted(keys - set(CURVE_COLUMNS))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return out.getvalue()


def curves_filename(trial: FrozenTrial) -> str:
    return f"trial-{trial.number}-curves.csv"


def artifact_store(artifact_dir: str | Path) -> FileSystemArtifactStore:
    """A file-system artifact store in ``artifact_dir``, created on demand."""
    path = Path(artifact_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SamtuneError(f"cannot create the artifact directory {str(path)!r} ({exc.strerror}); "
                           "pass --artifact-dir with a writable folder.") from None
    return FileSystemArtifactStore(path)


def _stored(store: FileSystemArtifactStore, artifact_id: str) -> bytes | None:
    try:
        with store.open_reader(artifact_id) as fh:
            return fh.read()
    except ArtifactNotFound:
        return None


def _find(attrs: dict[str, Any], prefix: str, filename: str) -> str | None:
    """The artifact id of ``filename`` among metadata attributes under ``prefix``."""
    for key, value in attrs.items():
        if key.startswith(prefix) and json.loads(value).get("filename") == filename:
            return key[len(prefix):]
    return None


def _publish_curves(study: optuna.Study, store: FileSystemArtifactStore, done: Published) -> None:
    storage, study_id = study._storage, study._study_id
    study_attrs = storage.get_study_system_attrs(study_id)
    for trial in study.get_trials(deepcopy=False):
        history = trial.user_attrs.get("history")
        if not trial.state.is_finished() or not history:
            continue  # a running trial gets its curves when publish runs after it finishes
        data = curves_csv(history).encode()
        filename = curves_filename(trial)
        prefix = _DASHBOARD_TRIAL_ARTIFACT.format(trial_id=trial._trial_id)
        artifact_id = (_find(study_attrs, prefix, filename)
                       or _find(storage.get_trial_system_attrs(trial._trial_id), _OPTUNA_ARTIFACT, filename))
        if artifact_id is None:
            artifact_id = str(uuid.uuid4())
            store.write(artifact_id, io.BytesIO(data))
            meta = {"artifact_id": artifact_id, "filename": filename, "mimetype": "text/csv",
                    "encoding": None}
            storage.set_study_system_attr(study_id, prefix + artifact_id, json.dumps(meta))
            done.artifacts_added += 1
        elif _stored(store, artifact_id) != data:  # e.g. another --artifact-dir than last time
            store.write(artifact_id, io.BytesIO(data))
            done.artifacts_rewritten += 1


def _publish_recommendation(study: optuna.Study, store: FileSystemArtifactStore, done: Published) -> None:
    rec = study.user_attrs.get("recommendation")
    if rec is None:
        return
    data = (json.dumps(rec, indent=2) + "\n").encode()
    attrs = study._storage.get_study_system_attrs(study._study_id)
    artifact_id = _find(attrs, _OPTUNA_ARTIFACT, RECOMMENDATION_FILE)
    if artifact_id is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / RECOMMENDATION_FILE
            path.write_bytes(data)
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)
        done.artifacts_added += 1
    elif _stored(store, artifact_id) != data:  # the study was resumed and re-confirmed
        store.write(artifact_id, io.BytesIO(data))
        done.artifacts_rewritten += 1


def publish(study: optuna.Study, artifact_dir: str | Path) -> Published:
    """Attach to ``study``, for optuna-dashboard: each finished trial's per-epoch curves (CSV
    artifact: validation accuracy and loss and every forgetting metric), the recommendation
    (study artifact), a Markdown note (the recommendation, the baseline comparison, how to
    apply it) and three figures (early forgetting vs final accuracy, best per variant, pruned
    vs completed). Idempotent: running it again adds nothing; text that a user wrote in the
    note above samtune's heading is kept."""
    store = artifact_store(artifact_dir)
    done = Published()
    _publish_curves(study, store, done)
    _publish_recommendation(study, store, done)
    existing = get_note(study)
    note = merge_note(existing, study_note(study.study_name, study.user_attrs.get("recommendation")))
    if note != existing:
        save_note(study, note)
        done.note_saved = True
    trials = study.get_trials(deepcopy=False)
    for graph_id, build in FIGURES.items():
        save_plotly_graph_object(study, build(trials), graph_object_id=graph_id)
        done.figures.append(graph_id)
    return done
