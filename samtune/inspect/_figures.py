"""Plotly figures of a samtune study, shared by the dashboard (``publish``) and the report.

Each builder takes plain inputs (finished trials, or the recommendation dict) and returns a
``plotly.graph_objects.Figure``; none of them reads storage, so they are cheap to test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

# One colour per variant in every figure (the baseline grey, so SAM-family colours stand out).
VARIANT_COLORS = {
    "sgd": "#7f7f7f", "sam": "#1f77b4", "asam": "#ff7f0e", "gsam": "#2ca02c", "obf": "#d62728",
    "randsam": "#9467bd", "gsam-obf": "#8c564b", "asam-obf": "#e377c2",
}
_OTHER_COLORS = ("#17becf", "#bcbd22", "#393b79", "#637939")
STATE_COLORS = {"complete": "#2ca02c", "pruned": "#ff7f0e", "fail": "#d62728", "running": "#1f77b4",
                "waiting": "#7f7f7f"}
BASELINE = "sgd"  # the variant name of the plain-optimizer baseline
HEIGHT = 420  # px: every figure the same height, readable in the dashboard and the report


def variant_of(trial: FrozenTrial) -> str:
    """The trial's variant: its parameter, else its stored configuration."""
    return str(trial.params.get("variant") or trial.user_attrs.get("config", {}).get("variant", "?"))


def variant_color(variant: str) -> str:
    if variant in VARIANT_COLORS:
        return VARIANT_COLORS[variant]
    return _OTHER_COLORS[sum(map(ord, variant)) % len(_OTHER_COLORS)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _label(trial: FrozenTrial) -> str:
    return f"trial {trial.number}: {trial.user_attrs.get('config_text', variant_of(trial))}"


def _variants_in_order(variants: Sequence[str]) -> list[str]:
    known = [v for v in VARIANT_COLORS if v in variants]
    return known + sorted(set(variants) - set(known))


def _layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01}, height=HEIGHT, template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 70, "b": 60}, **kwargs)
    return fig


# Early signals plotted against the final accuracy: (user attribute, axis title).
FORGETTING_SIGNALS = (
    ("early_flip_rate", "early flip rate (correct at w, wrong at w+e)"),
    ("early_forgetting_rate", "early example forgetting rate"),
)


def forgetting_vs_accuracy(trials: Sequence[FrozenTrial]) -> go.Figure:
    """Early forgetting signals (epoch 2) against final validation accuracy, one colour per
    variant: the relation the forgetting pruner relies on. Complete trials only (a pruned
    trial has no final accuracy); baseline trials have no flip rate, so they appear only in
    the forgetting-rate panel."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    fig = make_subplots(rows=1, cols=len(FORGETTING_SIGNALS), shared_yaxes=True,
                        horizontal_spacing=0.06)
    for variant in _variants_in_order([variant_of(t) for t in done]):
        group = [t for t in done if variant_of(t) == variant]
        for col, (attr, _) in enumerate(FORGETTING_SIGNALS, 1):
            points = [(x, y, t) for t in group
                      if (x := _number(t.user_attrs.get(attr))) is not None
                      and (y := _number(t.user_attrs.get("final_val_acc", t.value))) is not None]
            if not points:
                continue
            fig.add_trace(go.Scatter(
                x=[p[0] for p in points], y=[p[1] for p in points], mode="markers",
                name=variant, legendgroup=variant, showlegend=col == 1 or variant == BASELINE,
                marker={"color": variant_color(variant), "size": 10, "opacity": 0.85,
                        "line": {"width": 1, "color": "white"}},
                text=[_label(p[2]) for p in points],
                hovertemplate="%{text}<br>x=%{x:.4f}<br>final val acc=%{y:.4f}<extra></extra>",
            ), row=1, col=col)
    for col, (_, title) in enumerate(FORGETTING_SIGNALS, 1):
        fig.update_xaxes(title_text=title, row=1, col=col)
    fig.update_yaxes(title_text="final validation accuracy", row=1, col=1)
    return _layout(fig, "Early forgetting vs final validation accuracy", legend_title_text="variant")


def best_per_variant(trials: Sequence[FrozenTrial]) -> go.Figure:
    """The best final validation accuracy (the trial value) of each variant's complete trials."""
    best: dict[str, FrozenTrial] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE or _number(t.value) is None:
            continue
        v = variant_of(t)
        if v not in best or t.value > best[v].value:
            best[v] = t
    variants = _variants_in_order(list(best))
    fig = go.Figure(go.Bar(
        x=variants, y=[best[v].value for v in variants],
        marker={"color": [variant_color(v) for v in variants]},
        text=[f"{best[v].value:.4f} (#{best[v].number})" for v in variants], textposition="outside",
        customdata=[_label(best[v]) for v in variants],
        hovertemplate="%{customdata}<br>val acc=%{y:.4f}<extra></extra>",
    ))
    if BASELINE in best:
        fig.add_hline(y=best[BASELINE].value, line_dash="dash", line_color=variant_color(BASELINE),
                      annotation_text="best baseline", annotation_position="bottom right")
    values = [best[v].value for v in variants]
    # accuracies cluster near the top: zoom to them (in 0.05 steps) so differences show
    low = max(0.0, math.floor((min(values, default=0.0) - 0.05) / 0.05) * 0.05)
    fig.update_yaxes(title_text="best validation accuracy",
                     range=[low, max(values, default=1.0) + 0.1 * (1.05 - low)])
    fig.update_xaxes(title_text="variant")
    return _layout(fig, "Best validation accuracy per variant", showlegend=False)


def trial_states(trials: Sequence[FrozenTrial]) -> go.Figure:
    """Epochs trained per trial, coloured by state: where the pruner stopped trials."""
    fig = go.Figure()
    counts = []
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING):
        group = [t for t in trials if t.state == state]
        if not group:
            continue
        name = state.name.lower()
        counts.append(f"{len(group)} {name}")
        fig.add_trace(go.Bar(
            x=[t.number for t in group],
            y=[_number(t.user_attrs.get("epochs_trained")) or len(t.user_attrs.get("history", []))
               for t in group],
            name=name, marker={"color": STATE_COLORS[name]},
            customdata=[[_label(t), t.user_attrs.get("prune_reason", "")] for t in group],
            hovertemplate="%{customdata[0]}<br>epochs=%{y}<br>%{customdata[1]}<extra></extra>",
        ))
    fig.update_xaxes(title_text="trial", dtick=1 if len(trials) <= 30 else None)
    fig.update_yaxes(title_text="epochs trained")
    title = f"Pruned vs completed trials ({', '.join(counts) or 'no trials'})"
    return _layout(fig, title, legend_title_text="state", barmode="overlay")


def confirmation(recommendation: dict[str, Any]) -> go.Figure:
    """Mean test accuracy ± std over the confirmation seeds of every confirmed configuration,
    the baseline highlighted and its mean drawn across the plot."""
    cands = list(recommendation.get("candidates", []))
    cands.sort(key=lambda c: c["test_accuracy"]["mean"])  # best on top of a horizontal plot
    is_base = [c["config"]["variant"] == BASELINE for c in cands]
    fig = go.Figure(go.Scatter(
        x=[c["test_accuracy"]["mean"] for c in cands],
        y=[c["description"] for c in cands],
        error_x={"type": "data", "array": [c["test_accuracy"]["std"] for c in cands],
                 "visible": True, "thickness": 2, "width": 6},
        mode="markers",
        marker={"size": 14, "symbol": ["diamond" if b else "circle" for b in is_base],
                "color": [variant_color(c["config"]["variant"]) for c in cands],
                "line": {"width": [3 if b else 1 for b in is_base], "color": "black"}},
        customdata=[[c["test_accuracy"]["std"], len(c["test_accuracy"].get("per_seed", [])),
                     c.get("cost_multiplier", "?")] for c in cands],
        hovertemplate=("%{y}<br>test acc %{x:.4f} ± %{customdata[0]:.4f} "
                       "(%{customdata[1]} seeds)<br>cost %{customdata[2]}x<extra></extra>"),
        showlegend=False,
    ))
    base = recommendation.get("baseline", {}).get("test_accuracy", {})
    if _number(base.get("mean")) is not None:
        fig.add_vline(x=base["mean"], line_dash="dash", line_color=variant_color(BASELINE),
                      annotation_text="baseline mean", annotation_position="top left")
    fig.update_xaxes(title_text="test accuracy (mean ± std over seeds)")
    fig.update_yaxes(automargin=True)
    return _layout(fig, "Confirmation runs on the test split vs the baseline")
