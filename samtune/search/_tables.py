"""Plain-text tables for the terminal (``samtune show`` and the search's closing summary)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from samtune.search._metric import value_name
from samtune.search._search import SETTINGS_ATTR


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def top_trials_table(study: optuna.Study, n: int = 10) -> str:
    """The best ``n`` complete trials, then counts of the others."""
    trials = study.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    rows = []
    for rank, t in enumerate(done[:n], 1):
        p = t.params
        variant = p.get("variant", t.user_attrs.get("config", {}).get("variant"))  # baselines: lr only
        rows.append([str(rank), str(t.number), _fmt(variant), _fmt(p.get("rho")),
                     _fmt(p.get("m")), _fmt(p.get("schedule")),
                     _fmt(p.get("lr", t.user_attrs.get("config", {}).get("base_kwargs", {}).get("lr"))),
                     _fmt(t.user_attrs.get("early_flip_rate")), f"{t.value:.4f}"])
    value = value_name(study.user_attrs.get(SETTINGS_ATTR, {}).get("metric"))  # what t.value is
    table = _table(["rank", "trial", "variant", "rho", "m", "schedule", "lr", "flip@2", value], rows)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    tail = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    return f"{table}\n({tail or 'no trials'})"


def confirmation_table(candidates: list[dict[str, Any]], metric: dict[str, Any] | None = None) -> str:
    """The confirmed configurations; with a ``metric`` (the recommendation's) other than
    accuracy, its mean test score in a column of its own."""
    name = (metric or {}).get("name", "accuracy")
    other = name != "accuracy" and all("test_metric" in c for c in candidates)
    rows = [[c["description"], f"{c['test_accuracy']['mean']:.4f}", f"{c['test_accuracy']['std']:.4f}",
             *([f"{c['test_metric']['mean']:.4f}"] if other else []),
             _fmt(c.get("cost_multiplier"))] for c in candidates]
    column = ["test_cost" if name.startswith("cost:") else f"test_{name}"] if other else []
    return _table(["configuration", "test_acc", "std", *column, "cost"], rows)
