"""The recommendation in words: the dashboard note (Markdown) and the pieces the report shares
with it (configuration rows, baseline comparison, how to apply it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOTE_HEADING = "## samtune recommendation"  # samtune owns the note from this line on


def pct(x: float) -> str:
    return f"{100 * x:+.2f} pp"


def gain_text(rec: dict[str, Any]) -> str:
    """The recommendation's gain: ``+3.00 pp``, or for a cost metric ``-0.0800 mean cost``."""
    if (rec.get("metric") or {}).get("greater_is_better") is False:
        return f"{-rec['gain']:+.4f} mean cost"
    return pct(rec["gain"])


def acc_text(acc: dict[str, Any]) -> str:
    """``0.9500 ± 0.0040 (3 seeds)``"""
    n = len(acc.get("per_seed", []))
    return f"{acc['mean']:.4f} ± {acc['std']:.4f} ({n} seed{'s' if n != 1 else ''})"


def config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    """A SAMConfig dict as (key, value) rows, nested kwargs flattened (``base_kwargs.lr``)."""
    rows = []
    for key, value in config.items():
        if isinstance(value, dict):
            rows.extend((f"{key}.{k}", _value(v)) for k, v in value.items())
        elif key == "m" and value is None:
            rows.append((key, "None (the whole batch)"))
        else:
            rows.append((key, _value(value)))
    return rows


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "None" if v is None else str(v)


def description_of(rec: dict[str, Any], config: dict[str, Any], default: str) -> str:
    """The confirmed candidate's description of ``config``, else ``default``."""
    return next((c["description"] for c in rec.get("candidates", []) if c["config"] == config), default)


def recommendation_path(rec: dict[str, Any]) -> Path:
    """Where ``samtune search`` wrote the recommendation by default (unless --out said else)."""
    from samtune.search._search import default_out_dir

    study = rec.get("study", {})
    return default_out_dir(study.get("storage", ""), study.get("name", "study")) / "recommendation.json"


def apply_snippets(rec: dict[str, Any]) -> tuple[str, str]:
    """Two Python snippets: load the recommendation file, or rebuild the configuration inline."""
    from_file = (
        "import samtune\n\n"
        "# total_steps: the number of optimizer steps you will take (decaying schedules need it)\n"
        f'rec = samtune.load_recommendation("{recommendation_path(rec).as_posix()}")\n'
        "optimizer = samtune.build_optimizer(model, rec.config, total_steps=total_steps)\n"
    )
    config = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in rec["config"].items()) + "}"
    inline = (
        "import torch.nn.functional as F\n"
        "from samtune import SAMConfig, build_optimizer\n\n"
        f"config = SAMConfig.from_dict({config})\n"
        "optimizer = build_optimizer(model, config, total_steps=total_steps)\n"
        "for x, y in loader:  # one step = the clean and the perturbed pass\n"
        "    out = optimizer.train_step(model, x, y, F.cross_entropy)\n"
    )
    return from_file, inline


def study_note(study_name: str, rec: dict[str, Any] | None) -> str:
    """The Markdown note samtune keeps on the study (from ``NOTE_HEADING`` on)."""
    lines = [NOTE_HEADING, ""]
    if rec is None:
        lines += [f"Study `{study_name}` has no recommendation yet: the search has not finished its "
                  "confirmation runs. Run `samtune search` again with the same options to finish it; "
                  "the trials below are already usable.", ""]
        return "\n".join(lines)
    base = rec["baseline"]
    chosen_desc = description_of(rec, rec["config"], rec["config"]["variant"])
    base_desc = description_of(rec, base["config"], "tuned baseline")
    verdict = "use this SAM configuration" if rec["verdict"] == "use" else "keep the baseline"
    metric = rec.get("metric") or {}
    judged = ([f"Judged on {metric['description']}; test {metric['name']}: recommended "
               f"{acc_text(rec['test_metric'])}, baseline {acc_text(base['test_metric'])}.", ""]
              if metric.get("name", "accuracy") != "accuracy" else [])
    lines += [
        f"**Verdict: `{rec['verdict']}`** ({verdict}). {rec['summary']}", "", *judged,
        "| | configuration | test accuracy (mean ± std) | cost (step time) |",
        "|---|---|---|---|",
        f"| **recommended** | {chosen_desc} | {acc_text(rec['test_accuracy'])} | "
        f"{rec['cost_multiplier']}x |",
        f"| baseline | {base_desc} | {acc_text(base['test_accuracy'])} | 1.0x |", "",
        f"Gain over the tuned baseline: **{gain_text(rec)}** at **{rec['cost_multiplier']}x** the "
        "step time. The verdict is `use` only when a SAM-family configuration beats the baseline "
        "by more than the noise bound: the larger of the seed spread and twice the paired "
        "standard error over test examples.", "",
        "### Every confirmed configuration", "",
        "| configuration | trial | val accuracy | test accuracy (mean ± std) | cost |",
        "|---|---|---|---|---|",
    ]
    for c in rec.get("candidates", []):
        lines.append(f"| {c['description']} | {c.get('trial', '')} | {c.get('val_accuracy', float('nan')):.4f} | "
                     f"{acc_text(c['test_accuracy'])} | {c.get('cost_multiplier', '')}x |")
    lines += ["", "### The configuration", "", "| key | value |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in config_rows(rec["config"])]
    from_file, inline = apply_snippets(rec)
    train = rec.get("train", {})
    lines += [
        "", "### How to apply it", "",
        "Load the recommendation that `samtune search` wrote (there by default; in the `--out` "
        f"folder if you passed one; `samtune recommend --study {study_name} --out DIR` writes it "
        "again):", "",
        "```python", from_file.rstrip(), "```", "",
        "Or rebuild the configuration inline:", "",
        "```python", inline.rstrip(), "```", "",
        f"Evidence: {train.get('epochs', '?')} epochs, batch size {train.get('batch_size', '?')}, "
        f"model `{train.get('model', '?')}`; {rec.get('study', {}).get('n_trials', '?')} trials "
        f"({rec.get('study', {}).get('n_pruned', '?')} pruned); "
        f"{rec.get('compute', {}).get('epochs', '?')} epochs trained in all; samtune "
        f"{rec.get('samtune_version', '?')}.", "",
        "samtune's figures are on the study's main page: early forgetting vs final accuracy, the "
        "best result per variant, and pruned vs completed trials. Each trial's per-epoch curves "
        "are attached to it as a CSV artifact; `samtune report` writes all of this to one HTML "
        "file.", "",
    ]
    return "\n".join(lines)


def merge_note(existing: str, ours: str) -> str:
    """Keep what the user wrote above samtune's heading; replace samtune's part."""
    head, sep, _ = existing.partition(NOTE_HEADING)
    if not sep:
        head = existing
    head = head.rstrip()
    return f"{head}\n\n{ours}" if head else ours
