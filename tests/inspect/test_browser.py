"""In a real browser (headless Chromium): the dashboard shows the study, the report renders its
figures without JavaScript errors. Screenshots go to test-artifacts/ for people to look at."""

from __future__ import annotations

from pathlib import Path

import pytest

from samtune.inspect import SECTIONS, write_report

# optuna-dashboard computes importances of the 4-trial study: PED-ANOVA warns about so few
pytestmark = pytest.mark.filterwarnings("ignore:Some regimes for parameter")
TIMEOUT_S = 20  # to render a page; a warm page takes about a second


def _wait_for(driver, predicate, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, TIMEOUT_S, poll_frequency=0.2).until(lambda d: predicate(d))
    except TimeoutException:
        text = driver.execute_script("return document.body ? document.body.innerText : ''")
        pytest.fail(f"timed out waiting for {what}; the page shows: {text[:1000]!r}")


def _text(driver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def _js_errors(driver) -> list[str]:
    """Errors thrown on the page (window.__errors) and console errors since the last call."""
    thrown = driver.execute_script("return window.__errors || []")
    console = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return thrown + console


def _screenshot(driver, path: Path, height: int | None = None) -> None:
    """The whole page (or ``height`` px, for pages that scroll inside a pane)."""
    size = driver.get_window_size()
    height = height or driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], min(max(height, size["height"]), 6000))
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])


def test_error_collector_sees_a_thrown_error(browser, tmp_path):
    """The check used below works: a page that throws is caught."""
    page = tmp_path / "boom.html"
    page.write_text("<!DOCTYPE html><html><body><script>throw new Error('boom-42')</script></body></html>")
    browser.get(page.as_uri())
    assert any("boom-42" in e for e in _js_errors(browser))


def test_report_renders_every_figure_without_javascript_errors(browser, made, artifacts_dir):
    path = write_report(made.load(), artifacts_dir / "report.html")
    browser.get(path.resolve().as_uri())
    figures = [sid for sid, _ in SECTIONS if sid != "recommendation"]
    _wait_for(browser, lambda d: d.execute_script(
        "return document.querySelectorAll('.js-plotly-plot .main-svg').length") >= len(figures),
        "plotly to draw every figure")
    for sid in figures:
        drawn = browser.execute_script(
            "const el = document.getElementById(arguments[0]);"
            "return el !== null && el.classList.contains('js-plotly-plot')"
            " && el.querySelectorAll('.main-svg').length > 0 && el.getBoundingClientRect().height > 200",
            f"fig-{sid}")
        assert drawn, sid
    assert _js_errors(browser) == []
    assert "keep-baseline" in _text(browser) or "use" in _text(browser)
    _screenshot(browser, artifacts_dir / "report.png")


def test_dashboard_shows_the_study_its_figures_trials_and_note(browser, served, artifacts_dir):
    study, base = served
    page = f"{base}/dashboard/studies/{study._study_id}"
    browser.get(page)
    _wait_for(browser, lambda d: "Early forgetting vs final validation accuracy" in _text(d)
              and "Best validation accuracy per variant" in _text(d)
              and d.execute_script("return document.querySelectorAll('.js-plotly-plot').length") >= 3,
              "the dashboard's study page and samtune's figures")
    _screenshot(browser, artifacts_dir / "dashboard-study.png")

    browser.get(f"{page}/trials")
    _wait_for(browser, lambda d: f"{len(study.trials)} Trials" in _text(d), "the trial list")
    text = _text(browser)
    for t in study.trials:
        assert f"Trial {t.number}" in text
    _wait_for(browser, lambda d: "trial-0-curves.csv" in _text(d), "trial 0's curves artifact")
    _screenshot(browser, artifacts_dir / "dashboard-trials.png", height=1250)

    browser.get(f"{page}/note")
    _wait_for(browser, lambda d: "samtune recommendation" in _text(d), "samtune's note")
    assert study.user_attrs["recommendation"]["verdict"] in _text(browser)
    assert "SAMConfig.from_dict" in _text(browser) and "base_kwargs.lr" in _text(browser)
    _screenshot(browser, artifacts_dir / "dashboard-note.png", height=2400)
    assert [e for e in _js_errors(browser) if "favicon" not in e] == []
