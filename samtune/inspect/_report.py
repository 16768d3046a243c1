"""``report``: one self-contained HTML file about a study (plotly.js inlined once, no network)."""

from __future__ import annotations

import html
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs

import samtune
from samtune.errors import SamtuneError
from samtune.inspect import _figures
from samtune.inspect._summary import (
    acc_text,
    apply_snippets,
    config_rows,
    description_of,
    gain_text,
)
from samtune.search._search import SETTINGS_ATTR
from samtune.search._storage import default_storage_url, load_study, open_storage

# (id, heading): the ids are stable, for links and tests.
SECTIONS = (
    ("recommendation", "Recommendation"),
    ("optimization-history", "Optimization history"),
    ("param-importances", "Parameter importances"),
    ("best-per-variant", "Best result per variant"),
    ("confirmation", "Confirmation runs against the baseline"),
    ("forgetting-vs-accuracy", "Forgetting versus accuracy"),
    ("trial-states", "Pruned and completed trials"),
)
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header, main { max-width: 1100px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 0; }
nav a { margin-right: 14px; }
section { background: white; border: 1px solid #e3e3e3; border-radius: 8px; padding: 18px 22px; margin: 18px 0; }
table { border-collapse: collapse; margin: 8px 0 14px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 5px 12px 5px 0; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
pre { background: #f4f4f6; padding: 10px 12px; border-radius: 6px; overflow-x: auto; }
.verdict { display: inline-block; padding: 3px 10px; border-radius: 12px; font-weight: 600; color: white; }
.verdict.use { background: #2ca02c; } .verdict.keep-baseline { background: #7f7f7f; }
.verdict.inconclusive { background: #d6a21e; }
.note { color: #555; font-style: italic; }
.muted { color: #666; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _figure(fig: go.Figure, section_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{section_id}",
                       config=_PLOTLY_CONFIG, default_height=f"{_figures.HEIGHT}px")


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(headers: list[str], rows: list[list[str]], numeric: Collection[int] = ()) -> str:
    """An HTML table of already-escaped cells; columns in ``numeric`` align right."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _recommendation(study: optuna.Study, rec: dict[str, Any] | None) -> str:
    if rec is None:
        return _note(f"Study {study.study_name!r} has no recommendation yet: its confirmation runs "
                     "have not finished. Run 'samtune search' again with the same options to "
                     "finish it; the sections below show the trials so far.")
    base = rec["baseline"]
    metric = rec.get("metric") or {}
    other = metric.get("name", "accuracy") != "accuracy"  # a column of its own for the metric
    rows = [[f"<b>recommended</b>: {_e(description_of(rec, rec['config'], rec['config']['variant']))}",
             _e(acc_text(rec["test_accuracy"])),
             *([_e(acc_text(rec["test_metric"]))] if other else []), f"{_e(rec['cost_multiplier'])}x"],
            [f"baseline: {_e(description_of(rec, base['config'], 'tuned baseline'))}",
             _e(acc_text(base["test_accuracy"])),
             *([_e(acc_text(base["test_metric"]))] if other else []), "1.0x"]]
    gain = gain_text(rec)
    from_file, inline = apply_snippets(rec)
    train, data, st, compute = (rec.get(k, {}) for k in ("train", "dataset", "study", "compute"))
    evidence = [
        ["data", _e(f"{data.get('path', '?')} ({data.get('kind', '?')}, {len(data.get('classes', []))} classes, "
                    f"splits {data.get('split_sizes', {})})")],
        ["training", _e(f"{train.get('epochs', '?')} epochs, batch size {train.get('batch_size', '?')}, "
                        f"model {train.get('model', '?')}")],
        ["study", _e(f"{st.get('n_trials', '?')} trials ({st.get('n_complete', '?')} complete, "
                     f"{st.get('n_pruned', '?')} pruned)")],
        ["compute", _e(f"{compute.get('epochs', '?')} epochs in all ({compute.get('search_epochs', '?')} "
                       f"search, {compute.get('confirmation_epochs', '?')} confirmation)")],
        ["samtune", _e(rec.get("samtune_version", "?"))],
    ]
    judged = (f'<p>Judged on <b id="metric">{_e(metric["description"])}</b>.</p>'
              if metric.get("description") else "")
    headers = ["configuration", "test accuracy (mean ± std)",
               *([f"test {metric['name']} (mean ± std)"] if other else []), "cost"]
    return "\n".join([
        f'<p><span class="verdict {_e(rec["verdict"])}">{_e(rec["verdict"])}</span> '
        f"{_e(rec['summary'])}</p>",
        judged,
        f"<p>Gain over the tuned baseline: <b id=\"gain\">{_e(gain)}</b>; cost: "
        f"<b id=\"cost\">{_e(rec['cost_multiplier'])}x</b> the baseline's step time.</p>",
        _best_line(rec),
        _table(headers, rows, set(range(1, len(headers)))),
        _confusions(rec),
        "<h3>Configuration</h3>",
        _table(["key", "value"], [[f"<code>{_e(k)}</code>", _e(v)] for k, v in config_rows(rec["config"])]),
        "<h3>How to apply it</h3>",
        "<p>Load the recommendation file that <code>samtune search</code> wrote (there by "
        "default; in the <code>--out</code> folder if you passed one):</p>",
        f"<pre>{_e(from_file)}</pre>",
        "<p>or rebuild the configuration inline:</p>",
        f"<pre>{_e(inline)}</pre>",
        "<h3>Evidence</h3>",
        _table(["", ""], evidence),
    ])


def _best_line(rec: dict[str, Any]) -> str:
    """When a cheaper configuration than the best was recommended: the best's gain and cost."""
    best = rec.get("best") or {}
    if not best:
        return ""
    gain = gain_text({**rec, "gain": best["gain"]})
    return (f'<p id="best">The best confirmed configuration, {_e(best["description"])}, gained '
            f"{_e(gain)} at {_e(best['cost'])}x the baseline's cost; the recommended one is the "
            "cheapest whose gain is beyond its own noise and within the noise of the best's.</p>")


def _confusions(rec: dict[str, Any]) -> str:
    """The recommended configuration's and the baseline's test confusion matrices (summed over
    their confirmation seeds), each row ending with that class's recall."""
    pairs = [("recommended", rec), ("baseline", rec["baseline"])]
    if not all(part.get("confusion") for _, part in pairs):
        return ""
    classes = rec.get("dataset", {}).get("classes") or [str(i) for i in range(len(rec["confusion"]))]
    out = ["<h3>Confusion matrices</h3>",
           "<p>Test split, summed over the confirmation seeds: rows are the true class, columns "
           "the predicted class; the last column is the class's recall.</p>"]
    for name, part in pairs:
        rows = [[f"<b>{_e(c)}</b>", *(_e(n) for n in counts), f"{part['per_class_recall'][k]:.3f}"]
                for k, (c, counts) in enumerate(zip(classes, part["confusion"]))]
        out.append(f'<p id="confusion-{name}">{_e(name)}:</p>')
        out.append(_table(["true \\ predicted", *map(str, classes), "recall"], rows,
                          set(range(1, len(classes) + 2))))
    return "\n".join(out)


def _optimization_history(study: optuna.Study, complete: list[Any]) -> str:
    if not complete:
        return _note("No trial has completed yet, so there is no history to plot.")
    return _figure(optuna.visualization.plot_optimization_history(study), "optimization-history")


def _param_importances(study: optuna.Study, complete: list[Any]) -> str:
    if len(complete) < 2:
        return _note(f"Parameter importances need at least 2 completed trials; this study has "
                     f"{len(complete)}.")
    names = {name for t in complete for name in t.params}
    if not any(len({repr(t.params.get(n)) for t in complete}) > 1 for n in names):
        return _note("Parameter importances need a parameter that varies across the completed "
                     "trials; here none does.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "some regimes have < 2 trials": said below instead
            fig = optuna.visualization.plot_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return _note(f"Parameter importances could not be computed ({exc}).")
    if not fig.data or not len(getattr(fig.data[0], "x", None) or []):
        return _note("Parameter importances could not be computed for these trials.")
    few = (_note(f"Only {len(complete)} completed trials: importances are rough.")
           if len(complete) < 10 else "")
    return few + _figure(fig, "param-importances")


def _confirmation(rec: dict[str, Any] | None) -> str:
    if rec is None or not rec.get("candidates"):
        return _note("No confirmation runs yet: they run when 'samtune search' finishes its trials.")
    rows = [[_e(c["description"]) + (" <b>(baseline)</b>" if c["config"] == rec["baseline"]["config"] else ""),
             _e(c.get("trial", "")), f"{c['test_accuracy']['mean']:.4f}", f"{c['test_accuracy']['std']:.4f}",
             _e(", ".join(f"{a:.4f}" for a in c["test_accuracy"].get("per_seed", []))),
             f"{_e(c.get('cost_multiplier', ''))}x"] for c in rec["candidates"]]
    return (_figure(_figures.confirmation(rec), "confirmation")
            + _table(["configuration", "trial", "mean", "std", "per seed", "cost"], rows, {2, 3, 5})
            + _gain_vs_cost(rec))


def _gain_vs_cost(rec: dict[str, Any]) -> str:
    """Each confirmed configuration's gain over the baseline against its cost, cheapest first,
    with the frontier (no other is better on both) marked; empty for recommendations made
    before the gain was recorded per candidate."""
    cands = [c for c in rec["candidates"] if "gain" in c]
    if not cands:
        return ""
    cost_metric = (rec.get("metric") or {}).get("greater_is_better") is False
    front = [f["config"] for f in rec.get("frontier", [])]
    best = (rec.get("best") or {}).get("description")

    def num(x: Any, signed: bool = True) -> str:
        if not isinstance(x, int | float):
            return "-"
        if cost_metric:  # a gain is a drop of the mean cost
            return f"{-x:+.4f}" if signed else f"{x:.4f}"
        return f"{100 * x:+.2f} pp" if signed else f"{100 * x:.2f} pp"

    def role(c: dict[str, Any]) -> str:
        if c["config"] == rec["baseline"]["config"]:
            return "baseline"
        if c["config"] == rec["config"]:
            return "<b>recommended</b>"
        return "best" if c["description"] == best else ""

    def cost_of(c: dict[str, Any]) -> float:
        x = c.get("cost_multiplier")
        return x if isinstance(x, int | float) and x == x else float("inf")

    rows = [[_e(c["description"]), num(c["gain"]), num(c.get("bound"), signed=False),
             f"{_e(c.get('cost_multiplier', ''))}x", "yes" if c["config"] in front else "",
             role(c)] for c in sorted(cands, key=cost_of)]
    limit = (f" Only configurations at most {rec['max_cost']:g}x the baseline's cost could be "
             "recommended (--max-cost)." if rec.get("max_cost") else "")
    return ('<h3 id="gain-vs-cost">Gain against cost</h3>'
            "<p>Each confirmed configuration's gain over the baseline on the test split (with "
            "the noise bound it had to beat) against its step time over the baseline's, "
            "cheapest first. On the frontier: no other configuration has a higher gain at a "
            f"lower cost.{_e(limit)}</p>"
            + _table(["configuration", "gain", "bound", "cost", "frontier", ""], rows, {1, 2, 3}))


def _forgetting(trials: list[Any]) -> str:
    has = any(t.user_attrs.get(a) is not None for t in trials for a, _ in _figures.FORGETTING_SIGNALS)
    text = ("<p>Each point is a completed trial: its forgetting signals at epoch 2 against its final "
            "validation accuracy. The forgetting pruner relies on this relation to stop trials "
            "early; a clear trend means early signals predicted the outcome.</p>")
    if not has:
        return text + _note("No completed trial recorded early forgetting signals.")
    return text + _figure(_figures.forgetting_vs_accuracy(trials), "forgetting-vs-accuracy")


def build_report(study: optuna.Study) -> str:
    """The report's HTML text."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    rec = study.user_attrs.get("recommendation")
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    bodies = {
        "recommendation": _recommendation(study, rec),
        "optimization-history": _optimization_history(study, complete),
        "param-importances": _param_importances(study, complete),
        "best-per-variant": (_figure(_figures.best_per_variant(trials), "best-per-variant") if complete
                             else _note("No trial has completed yet.")),
        "confirmation": _confirmation(rec),
        "forgetting-vs-accuracy": _forgetting(trials),
        "trial-states": _figure(_figures.trial_states(trials), "trial-states"),
    }
    counts = ", ".join(f"{n} {s.name.lower()}" for s in TrialState
                       if (n := sum(t.state == s for t in trials)))
    data = settings.get("dataset", {}).get("path") or (rec or {}).get("dataset", {}).get("path", "?")
    subtitle = (f"data {data} · {counts or 'no trials'} · {settings.get('epochs', '?')} epochs per "
                f"trial · model {settings.get('model', '?')} · space {settings.get('space_name', '?')}")
    nav = " ".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title in SECTIONS)
    sections = "\n".join(f'<section id="{sid}"><h2>{_e(title)}</h2>\n{bodies[sid]}\n</section>'
                         for sid, title in SECTIONS)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>samtune report: {_e(study.study_name)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<header>
<h1>samtune report: {_e(study.study_name)}</h1>
<p class="muted">{_e(subtitle)}</p>
<nav>{nav}</nav>
</header>
<main>
{sections}
<p class="muted">Made by samtune {_e(samtune.__version__)}.</p>
</main>
</body>
</html>
"""


def write_report(study: optuna.Study, out: str | Path) -> Path:
    """Write the report of ``study`` to ``out`` and return its path."""
    path = Path(out)
    text = build_report(study)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SamtuneError(f"cannot write the report to {str(path)!r} ({exc.strerror}); "
                           "pass --out with a writable location.") from None
    return path


def report(study: str, storage: str | None = None, out: str | Path = "report.html") -> Path:
    """``samtune report``: load ``study`` from ``storage`` and write its report to ``out``."""
    s = load_study(study, open_storage(storage or default_storage_url(study), create=False))
    return write_report(s, out)
