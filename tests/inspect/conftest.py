"""Studies to look at: one real (made once per session by a few-second search) and synthetic
ones (built with create_trial, no training) for the cases a small search does not produce:
pruned trials, no recommendation yet, too few trials for importances."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from samtune.inspect import make_dashboard_server, publish
from samtune.search import search
from samtune.search._storage import open_storage

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"  # screenshots and reports kept for people to look at


@dataclass
class Made:
    root: Path
    name: str = "t"

    @property
    def db(self) -> Path:
        return self.root / "s.db"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.url)


@pytest.fixture(scope="session")
def made(tmp_path_factory) -> Made:
    """A real study: wine, the quick space, 4 trials of 2 epochs, confirmed with 2 seeds.
    Treat it as read-only; take ``fresh`` to change a study."""
    m = Made(tmp_path_factory.mktemp("made"))
    search("builtin:wine", trials=4, epochs=2, confirm_seeds=2, top_k=1, space="quick",
           storage=m.url, study=m.name, out=str(m.root / "out"), progress=False)
    return m


@pytest.fixture
def fresh(made, tmp_path) -> Made:
    """A private copy of the real study, safe to publish into."""
    shutil.copy(made.db, tmp_path / "s.db")
    return Made(tmp_path, made.name)


@pytest.fixture
def served(fresh, tmp_path):
    """The real study, published, behind a dashboard on a free loopback port."""
    study = fresh.load()
    publish(study, tmp_path / "artifacts")
    server = make_dashboard_server(open_storage(fresh.url, create=False), tmp_path / "artifacts",
                                   "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield study, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _history(epochs: int, *, sam: bool, acc: float) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "val_acc": acc - 0.1 * (epochs - e), "val_loss": 1.0 / e,
               "train_loss": 1.2 / e, "train_acc": 0.5 + 0.1 * e, "forgetting_rate": 0.02 * e,
               "bias_clean": 0.01}
        if sam:
            row |= {"flip_rate": 0.1 / e, "loss_gap": 0.05, "p_drop": 0.02, "bias_perturbed": None}
        rows.append(row)
    return rows


VARIANTS = CategoricalDistribution(["sgd", "sam", "asam"])
RHO = FloatDistribution(0.01, 2.0, log=True)

# (variant, rho, state, final val acc, epochs): two baselines, two sam, one asam, one pruned sam
SYNTHETIC = [
    ("sgd", None, TrialState.COMPLETE, 0.90, 3),
    ("sam", 0.05, TrialState.COMPLETE, 0.93, 3),
    ("sgd", None, TrialState.COMPLETE, 0.91, 3),
    ("asam", 1.0, TrialState.COMPLETE, 0.88, 3),
    ("sam", 0.5, TrialState.PRUNED, 0.40, 1),
    ("sam", 0.1, TrialState.COMPLETE, 0.95, 3),
]


def synthetic_recommendation() -> dict:
    from samtune.optim import SAMConfig

    sam = SAMConfig(variant="sam", rho=0.1).to_dict()
    sgd = SAMConfig(variant="sgd").to_dict()
    acc = {"mean": 0.95, "std": 0.01, "per_seed": [0.94, 0.95, 0.96]}
    base_acc = {"mean": 0.90, "std": 0.02, "per_seed": [0.88, 0.90, 0.92]}
    return {
        "verdict": "use", "summary": "use sam rho=0.1: test accuracy 0.9500 vs baseline 0.9000",
        "config": sam, "test_accuracy": acc, "baseline": {"config": sgd, "test_accuracy": base_acc},
        "gain": 0.05, "cost_multiplier": 2.1,
        "candidates": [
            {"description": "sam rho=0.1 (sgd, lr=0.05)", "config": sam, "trial": 5,
             "val_accuracy": 0.95, "test_accuracy": acc, "cost_multiplier": 2.1},
            {"description": "sgd baseline (sgd, lr=0.05)", "config": sgd, "trial": 2,
             "val_accuracy": 0.91, "test_accuracy": base_acc, "cost_multiplier": 1.0},
        ],
        "train": {"epochs": 3, "batch_size": 16, "model": "mlp"},
        "dataset": {"path": "synthetic", "kind": "tabular", "classes": ["a", "b"]},
        "study": {"name": "syn", "storage": "sqlite:///studies/syn.db", "n_trials": 6,
                  "n_complete": 5, "n_pruned": 1},
        "compute": {"search_epochs": 16, "confirmation_epochs": 12, "epochs": 28},
        "samtune_version": "0.1.0",
    }


def make_synthetic(storage: str | None = None, *, rows=SYNTHETIC, recommendation: bool = True) -> optuna.Study:
    study = optuna.create_study(study_name="syn", storage=storage, direction="maximize")
    study.set_user_attr("samtune", {"epochs": 3, "model": "mlp", "space_name": "synthetic",
                                    "dataset": {"path": "synthetic"}})
    for variant, rho, state, acc, epochs in rows:
        sam = variant != "sgd"
        history = _history(epochs, sam=sam, acc=acc)
        attrs = {"config_text": f"{variant} rho={rho}", "history": history,
                 "config": {"variant": variant}, "epochs_trained": float(epochs),
                 "early_forgetting_rate": history[min(1, epochs - 1)]["forgetting_rate"]}
        if state == TrialState.COMPLETE:
            attrs["final_val_acc"] = acc
        if sam:
            attrs["early_flip_rate"] = history[min(1, epochs - 1)]["flip_rate"]
        if state == TrialState.PRUNED:
            attrs["prune_reason"] = "forgetting: predicted 0.41 < 0.88"
        params, dists = {"variant": variant}, {"variant": VARIANTS}
        if rho is not None:
            params["rho"], dists["rho"] = rho, RHO
        study.add_trial(create_trial(
            state=state, value=acc if state == TrialState.COMPLETE else None, params=params,
            distributions=dists, user_attrs=attrs,
            intermediate_values={r["epoch"]: r["val_acc"] for r in history}))
    if recommendation:
        study.set_user_attr("recommendation", synthetic_recommendation())
    return study


@pytest.fixture
def synthetic() -> optuna.Study:
    return make_synthetic()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# --- the browser: headless Chromium from Debian packages, driven by selenium ----------------

INSTALL_BROWSER = REPO / "scripts" / "install-browser.sh"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installed by scripts/install-browser.sh when missing.
    A failed install fails the tests; SAMTUNE_SKIP_BROWSER=1 skips them instead."""
    if os.environ.get("SAMTUNE_SKIP_BROWSER") == "1":
        pytest.skip("SAMTUNE_SKIP_BROWSER=1")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        try:
            proc = subprocess.run(["bash", str(INSTALL_BROWSER)], capture_output=True, text=True,
                                  timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"{INSTALL_BROWSER} could not run ({exc}); set SAMTUNE_SKIP_BROWSER=1 to skip "
                        "the browser tests.")
        if proc.returncode != 0:
            pytest.fail(f"{INSTALL_BROWSER} failed (exit {proc.returncode}); set SAMTUNE_SKIP_BROWSER=1 "
                        f"to skip the browser tests.\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    paths = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(paths):
        pytest.fail(f"{INSTALL_BROWSER} ran but chromium/chromedriver are not on PATH")
    return paths


@pytest.fixture(scope="session")
def browser(chromium, tmp_path_factory):
    """A headless Chromium with a fresh profile; each page gets a JavaScript error collector
    (window.__errors) before its own scripts run, and console errors are logged."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromium[1]), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__errors = [];"
        "window.addEventListener('error', e => window.__errors.push(String(e.message)));"
        "window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));")})
    yield driver
    driver.quit()
