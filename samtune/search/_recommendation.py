"""``Recommendation``: the search's answer, with the evidence behind it.

Schema (``recommendation.json`` / ``.yaml``, and the study's ``recommendation`` user attribute):
verdict ("use" or "keep-baseline"), summary (one sentence), config (SAMConfig dict to apply),
test_accuracy {mean, std, per_seed}, baseline {config, test_accuracy}, gain (mean test accuracy
of config minus the baseline's), cost_multiplier (step time of config over the baseline's,
measured side by side), candidates (every confirmed configuration), train (epochs, batch_size,
model), dataset {fingerprint, path, classes, split_sizes, ...}, study {name, storage, n_trials,
n_complete, n_pruned}, compute {search_epochs, confirmation_epochs, epochs}, samtune_version.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

import samtune
from samtune.errors import SamtuneError
from samtune.optim import SAMConfig

VERDICTS = ("use", "keep-baseline")


@dataclass
class Recommendation:
    """Which SAM configuration, if any, to use on a data set, and the evidence.

    >>> rec = Recommendation.from_dict(Recommendation.example().to_dict())
    >>> rec.verdict, rec.config.variant
    ('use', 'sam')
    """

    verdict: str
    config: SAMConfig
    test_accuracy: dict[str, Any]
    baseline: dict[str, Any]
    gain: float
    cost_multiplier: float
    summary: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)
    compute: dict[str, Any] = field(default_factory=dict)
    samtune_version: str = ""

    @property
    def baseline_config(self) -> SAMConfig:
        return SAMConfig.from_dict(self.baseline["config"])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        return json.loads(json.dumps(d))  # plain JSON types only

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recommendation:
        try:
            d = dict(d)
            d["config"] = SAMConfig.from_dict(d["config"])
            rec = cls(**d)
        except (KeyError, TypeError) as exc:
            raise SamtuneError(f"not a samtune recommendation ({exc}); produce one with 'samtune search'.") from None
        if rec.verdict not in VERDICTS:
            raise SamtuneError(f"unknown verdict {rec.verdict!r}; expected one of {VERDICTS}.")
        return rec

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``recommendation.json`` and ``recommendation.yaml`` atomically."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SamtuneError(f"cannot create output directory {str(out)!r} ({exc.strerror}); pass --out with a writable folder.") from None
        d = self.to_dict()
        paths = (out / "recommendation.json", out / "recommendation.yaml")
        texts = (json.dumps(d, indent=2) + "\n", yaml.safe_dump(d, sort_keys=False))
        for path, text in zip(paths, texts):
            fd, tmp = tempfile.mkstemp(dir=out, prefix=".tmp-")
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        return paths

    @classmethod
    def load(cls, path: str | Path) -> Recommendation:
        path = Path(path)
        if path.is_dir():
            path = path / "recommendation.json"
        try:
            text = path.read_text()
        except OSError as exc:
            raise SamtuneError(f"cannot read recommendation {str(path)!r} ({exc.strerror}).") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SamtuneError(f"{str(path)!r} is not valid JSON/YAML ({str(exc).splitlines()[0]}).") from None
        if not isinstance(data, dict):
            raise SamtuneError(f"{str(path)!r} does not hold a recommendation mapping.")
        return cls.from_dict(data)

    @classmethod
    def example(cls) -> Recommendation:
        acc = {"mean": 0.95, "std": 0.004, "per_seed": [0.95, 0.946, 0.954]}
        return cls("use", SAMConfig(variant="sam"), acc,
                   {"config": SAMConfig(variant="sgd").to_dict(),
                    "test_accuracy": {"mean": 0.94, "std": 0.003, "per_seed": [0.94, 0.937, 0.943]}},
                   gain=0.01, cost_multiplier=2.0)


def build_recommendation(
    study: optuna.Study, confirmed: list[dict[str, Any]], dataset: Any, train_config: Any,
    model_name: str, storage_url: str, data: str,
) -> Recommendation:
    """Pick the winner by mean test accuracy and state the verdict."""
    baseline = next(c for c in confirmed if c["config"]["variant"] == "sgd")
    ranked = sorted(confirmed, key=lambda c: -_mean(c))
    winner = ranked[0]
    gain = _mean(winner) - _mean(baseline)
    spread = max(winner["test_accuracy"]["std"], baseline["test_accuracy"]["std"])
    best_sam = next((c for c in ranked if c["config"]["variant"] != "sgd"), None)
    if winner["config"]["variant"] != "sgd" and gain > spread:
        verdict, chosen = "use", winner
        summary = (f"use {winner['description']}: test accuracy {_mean(winner):.4f} vs "
                   f"baseline {_mean(baseline):.4f} (+{100 * gain:.2f} pp, seed spread "
                   f"{100 * spread:.2f} pp)")
    else:
        verdict, chosen = "keep-baseline", baseline
        if best_sam is None:
            why = "no SAM-family configuration was confirmed"
        else:
            g = _mean(best_sam) - _mean(baseline)
            why = (f"the best SAM-family configuration ({best_sam['description']}) scored "
                   f"{_mean(best_sam):.4f}, {100 * g:+.2f} pp, within or below the seed spread "
                   f"of {100 * spread:.2f} pp")
        summary = f"SAM does not help here: keep the tuned baseline ({baseline['description']}); {why}"
    trials = study.get_trials(deepcopy=False)
    search_epochs = sum(len(t.user_attrs.get("history", [])) for t in trials)
    confirm_epochs = sum(c["epochs"] for c in confirmed)
    cost = chosen["step_time"] / baseline["step_time"] if baseline["step_time"] > 0 else float("nan")
    return Recommendation(
        verdict=verdict,
        config=SAMConfig.from_dict(chosen["config"]),
        test_accuracy=chosen["test_accuracy"],
        baseline={"config": baseline["config"], "test_accuracy": baseline["test_accuracy"]},
        gain=gain if verdict == "use" else 0.0,
        cost_multiplier=round(cost, 3) if math.isfinite(cost) else float("nan"),
        summary=summary,
        candidates=[{k: c[k] for k in ("description", "config", "trial", "val_accuracy", "test_accuracy")}
                    | {"cost_multiplier": round(c["step_time"] / baseline["step_time"], 3)}
                    for c in ranked],
        train={"epochs": train_config.epochs, "batch_size": train_config.batch_size, "model": model_name},
        dataset={**dataset.describe(), "path": data},
        study={"name": study.study_name, "storage": storage_url, "n_trials": len(trials),
               "n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
               "n_pruned": sum(t.state == TrialState.PRUNED for t in trials)},
        compute={"search_epochs": search_epochs, "confirmation_epochs": confirm_epochs,
                 "epochs": search_epochs + confirm_epochs},
        samtune_version=samtune.__version__,
    )


def _mean(c: dict[str, Any]) -> float:
    m = c["test_accuracy"]["mean"]
    return m if m == m else -1.0
