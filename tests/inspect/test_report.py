"""``samtune report``: one self-contained HTML file with every section, for any study state."""

from __future__ import annotations

import html
import re

import pytest
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs

from samtune.inspect import SECTIONS, build_report, write_report
from tests.inspect.conftest import make_synthetic
from tests.inspect.test_dashboard import cli


def _section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', page, flags=re.S)
    assert match, f"no section {section_id!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def page(made) -> str:
    return build_report(made.load())


def test_report_has_every_section_with_its_heading_and_figure(page):
    assert [sid for sid, _ in SECTIONS] == ["recommendation", "optimization-history", "param-importances",
                                            "best-per-variant", "confirmation", "forgetting-vs-accuracy",
                                            "trial-states"]
    for sid, title in SECTIONS:
        body = _section(page, sid)
        assert f"<h2>{html.escape(title)}</h2>" in body
        assert f'href="#{sid}"' in page  # in the table of contents
        if sid != "recommendation":
            assert f'id="fig-{sid}"' in body, sid


def test_report_is_self_contained_with_plotly_inlined_once(page):
    assert "<script src" not in page and 'src="http' not in page and "cdn." not in page.split("<body>")[1]
    assert page.count(get_plotlyjs()[:300]) == 1
    assert page.count("Plotly.newPlot(") == len(SECTIONS) - 1


def test_recommendation_section_states_verdict_gain_cost_and_config(made, page):
    rec = made.load().user_attrs["recommendation"]
    body = _section(page, "recommendation")
    assert f'class="verdict {rec["verdict"]}"' in body
    assert html.escape(rec["summary"]) in body
    assert f"{100 * rec['gain']:+.2f} pp" in body and f"{rec['cost_multiplier']}x" in body
    assert "<code>variant</code>" in body and "<code>base_kwargs.lr</code>" in body
    assert "SAMConfig.from_dict(" in body and "load_recommendation(" in body
    confirmation = _section(page, "confirmation")
    for c in rec["candidates"]:
        assert html.escape(c["description"]) in confirmation
        assert f"{c['test_accuracy']['mean']:.4f}" in confirmation
    assert confirmation.count("(baseline)") == 1


def test_report_without_recommendation_says_so_and_renders_the_rest():
    page = build_report(make_synthetic(recommendation=False))
    assert "no recommendation yet" in _section(page, "recommendation")
    assert "No confirmation runs yet" in _section(page, "confirmation")
    for sid in ("optimization-history", "param-importances", "best-per-variant",
                "forgetting-vs-accuracy", "trial-states"):
        assert f'id="fig-{sid}"' in _section(page, sid), sid
    assert "1 pruned" in page


@pytest.mark.parametrize("rows, needle", [
    ([("sgd", None, TrialState.COMPLETE, 0.9, 2)], "at least 2 completed trials"),
    ([("sgd", None, TrialState.COMPLETE, 0.9, 2), ("sgd", None, TrialState.COMPLETE, 0.8, 2)],
     "none does"),
    ([("sam", 0.1, TrialState.PRUNED, 0.4, 1)], "at least 2 completed trials"),
])
def test_param_importances_degrade_to_a_note(rows, needle):
    page = build_report(make_synthetic(rows=rows, recommendation=False))
    body = _section(page, "param-importances")
    assert needle in body and "fig-param-importances" not in body


def test_report_of_a_study_without_complete_trials_still_renders():
    page = build_report(make_synthetic(rows=[("sam", 0.1, TrialState.PRUNED, 0.4, 1)], recommendation=False))
    assert "No trial has completed yet" in _section(page, "optimization-history")
    assert 'id="fig-trial-states"' in _section(page, "trial-states")


def test_report_command_writes_the_file_and_prints_its_path(made, tmp_path, capsys, artifacts_dir):
    out = tmp_path / "sub" / "report.html"
    assert cli(["report", "--study", made.name, "--storage", made.url, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    write_report(made.load(), artifacts_dir / "report.html")  # for people to open


def test_use_verdict_shows_the_gain_and_the_chosen_configuration(synthetic):
    page = build_report(synthetic)
    body = _section(page, "recommendation")
    assert 'class="verdict use"' in body and '<b id="gain">+5.00 pp</b>' in body
    assert '<b id="cost">2.1x</b>' in body
    assert "<b>recommended</b>: sam rho=0.1 (sgd, lr=0.05)" in body
    assert "<td><code>rho</code></td><td>0.1</td>" in body


def test_confirmation_section_shows_gain_against_cost_with_the_frontier_and_the_best():
    study = make_synthetic(recommendation=False)
    rec = make_synthetic().user_attrs["recommendation"]
    cheap = {"description": "sam rho=0.05 m=16 (sgd, lr=0.05)", "config": {"variant": "sam", "m": 16},
             "trial": 1, "val_accuracy": 0.93, "test_accuracy": rec["test_accuracy"],
             "cost_multiplier": 1.4, "gain": 0.04, "bound": 0.02}
    best, base = rec["candidates"]
    rec = {**rec, "config": cheap["config"], "gain": 0.04, "cost_multiplier": 1.4, "max_cost": 3.0,
           "candidates": [{**best, "gain": 0.05, "bound": 0.02}, cheap,
                          {**base, "gain": 0.0, "bound": None}],
           "frontier": [{"description": base["description"], "config": base["config"], "gain": 0.0,
                         "bound": None, "cost": 1.0},
                        {"description": cheap["description"], "config": cheap["config"],
                         "gain": 0.04, "bound": 0.02, "cost": 1.4}],
           "best": {"description": best["description"], "gain": 0.05, "cost": 2.1}}
    study.set_user_attr("recommendation", rec)
    page = build_report(study)
    table = _section(page, "confirmation").split('id="gain-vs-cost"')[1]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]
    assert [c[0] for c in cells] == [html.escape(base["description"]), html.escape(cheap["description"]),
                                     html.escape(best["description"])]  # cheapest first
    assert [c[1:5] for c in cells] == [["+0.00 pp", "-", "1.0x", "yes"],
                                       ["+4.00 pp", "2.00 pp", "1.4x", "yes"],
                                       ["+5.00 pp", "2.00 pp", "2.1x", ""]]
    assert [c[5] for c in cells] == ["baseline", "<b>recommended</b>", "best"]
    assert "at most 3x the baseline&#x27;s cost" in table
    assert "gained +5.00 pp at 2.1x the baseline" in _section(page, "recommendation")
