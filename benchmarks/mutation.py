"""Mutation testing of samtune's core with mutmut: one file at a time, against its own tests.

    .venv/bin/python benchmarks/mutation.py                      # every file in FILES
    .venv/bin/python benchmarks/mutation.py samtune/data/_prep.py --budget 300

For each file, a snapshot of the checkout (samtune/, tests/, studies/, pyproject.toml) is copied
to a scratch folder (``--work``, default /tmp/samtune-mutation), so that the checkout itself is
never mutated and edits made meanwhile do not disturb the run; mutmut is configured there to
mutate only that file and to run only the test files that cover it (FILES below), with one
worker process unless ``--jobs`` says otherwise. Each file's run is bounded by ``--budget``
seconds (mutants not reached count as "not checked"). Prints, per file, killed / total and the
surviving mutants; ``--show`` prints each survivor's diff. The kill rates and the survivors,
with why each is equivalent or left, are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# file -> the test files that cover it (the narrowest selection that kills its mutants)
FILES: dict[str, list[str]] = {
    "samtune/optim/_perturb.py": ["tests/optim/test_perturbation.py", "tests/optim/test_wiring.py"],
    "samtune/optim/_variants.py": ["tests/optim/test_variants.py", "tests/optim/test_config.py",
                                   "tests/optim/test_wiring.py"],
    "samtune/optim/_sam.py": ["tests/optim/test_step.py", "tests/optim/test_off_steps.py",
                              "tests/optim/test_wiring.py", "tests/optim/test_paths.py",
                              "tests/optim/test_variants.py", "tests/optim/test_distributed_wiring.py",
                              "tests/optim/test_config.py", "tests/optim/test_step_rules.py",
                              "tests/optim/test_distributed.py",  # _distributed_step
                              "tests/optim/test_msharp_linear.py"],  # _loop_pass, the reference
    "samtune/schedules/_rho.py": ["tests/schedules/test_rho.py", "tests/optim/test_step.py",
                                  "tests/schedules/test_schedule_rules.py"],
    "samtune/schedules/_perturb.py": ["tests/schedules/test_perturb.py", "tests/optim/test_off_steps.py",
                                      "tests/schedules/test_schedule_rules.py"],
    "samtune/train/_loop.py": ["tests/train/test_loop.py", "tests/train/test_loop_metric.py",
                               "tests/train/test_loop_precision.py", "tests/train/test_loop_rules.py"],
    "samtune/optim/_msharp_grouped.py": ["tests/optim/test_msharp_grouped.py", "tests/optim/test_paths.py"],
    "samtune/optim/_msharp_linear.py": ["tests/optim/test_msharp_linear.py", "tests/optim/test_paths.py"],
    "samtune/search/_confirm.py": ["tests/search/test_confirm.py", "tests/search/test_confirm_runs.py",
                                   "tests/search/test_evidence.py",  # settle's sequential seeds
                                   "tests/search/test_cost.py",  # cheapest_near_best
                                   "tests/search/test_confirm_rules.py",
                                   "tests/search/test_judged_on_validation.py"],  # judged_sam, judge
    "samtune/search/_recommendation.py": ["tests/search/test_recommendation.py",
                                          "tests/search/test_recommendation_build.py",
                                          "tests/search/test_stability.py"],
    "samtune/search/_space.py": ["tests/search/test_space.py", "tests/search/test_space_rules.py"],
    "samtune/search/_stages.py": ["tests/search/test_stages.py", "tests/search/test_warm_start.py"],
    "samtune/search/_evidence.py": ["tests/search/test_evidence.py", "tests/search/test_metric_verdict.py",
                                    "tests/search/test_recommendation_build.py"],
    "samtune/data/_prep.py": ["tests/data/test_data_prep.py"],
    "samtune/data/_tabular.py": ["tests/data/test_data_csv_rules.py", "tests/data/test_data_tabular.py",
                                 "tests/data/test_data_prep.py", "tests/data/test_data_errors.py"],
    "samtune/search/_forgetting_pruner.py": ["tests/search/test_pruners.py",
                                             "tests/search/test_pruner_rules.py"],
    "samtune/train/_forgetting.py": ["tests/train/test_metrics.py", "tests/train/test_forgetting_rules.py"],
    "samtune/train/_aggregator.py": ["tests/train/test_metrics.py", "tests/train/test_forgetting_rules.py"],
    "samtune/train/metrics.py": ["tests/train/test_metrics.py", "tests/train/test_forgetting_rules.py"],
    "samtune/metrics.py": ["tests/test_metrics.py", "tests/test_metric_rules.py"],
    "samtune/optim/_bn.py": ["tests/optim/test_step.py", "tests/optim/test_off_steps.py",
                             "tests/optim/test_bn_micro_rules.py"],
    "samtune/optim/_micro.py": ["tests/optim/test_step.py", "tests/optim/test_bn_micro_rules.py"],
    "samtune/optim/_config.py": ["tests/optim/test_config.py", "tests/optim/test_config_rules.py"],
    "samtune/search/_objective.py": ["tests/search/test_objective_rules.py", "tests/search/test_cost.py"],
    "samtune/optim/_msharp_loop.py": ["tests/optim/test_step.py", "tests/optim/test_step_rules.py",
                                      "tests/optim/test_wiring.py", "tests/optim/test_perturbation.py",
                                      "tests/optim/test_loop_rules.py",
                                      "tests/optim/test_vmap_rules.py"],  # loss scaling, every path
    "samtune/search/_cost.py": ["tests/search/test_cost.py", "tests/search/test_cost_rules.py",
                                "tests/search/test_confirm_rules.py",
                                "tests/search/test_recommendation_build.py"],
    "samtune/search/_metric.py": ["tests/search/test_metric_search.py", "tests/search/test_metric_verdict.py",
                                  "tests/search/test_pruner_metric.py", "tests/search/test_cost.py",
                                  "tests/search/test_metric_names.py"],
    "samtune/schedules/_lr.py": ["tests/schedules/test_lr_rules.py", "tests/schedules/test_schedule_rules.py", "tests/schedules/test_rho.py"],
    "samtune/optim/_output.py": ["tests/optim/test_output_rules.py", "tests/optim/test_step.py", "tests/optim/test_msharp_linear.py",
                                 "tests/optim/test_msharp_grouped.py", "tests/optim/test_step_rules.py"],
    "samtune/optim/_paths.py": ["tests/optim/test_paths.py", "tests/optim/test_paths_rules.py",
                                "tests/optim/test_step.py"],
    "samtune/optim/_msharp.py": ["tests/optim/test_vmap_rules.py", "tests/optim/test_step.py",
                                 "tests/optim/test_paths.py",
                                 "tests/optim/test_step_rules.py"],
    # the helpers only: search() itself runs through the end-to-end tests, too slow to select
    "samtune/search/_search.py": ["tests/search/test_search_rules.py", "tests/search/test_small_things.py",
                                  "tests/search/test_budget.py"],
    "samtune/search/_storage.py": ["tests/search/test_storage_rules.py", "tests/search/test_secrets.py"],
    "samtune/search/_options.py": ["tests/search/test_options_rules.py"],
}
COPIED = ("samtune", "tests", "studies", "pyproject.toml", "README.md")


def _config(target: str, tests: list[str]) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{i}"' for i in items) + "]"

    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["samtune"]\n'
        f"only_mutate = {toml_list([target])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]\n'
        'also_copy = ["tests", "studies", "README.md"]\n'
        "use_git_change_detection = false\n"
    )


def _snapshot(work: Path, target: str, tests: list[str]) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "mutants")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=ignore)  # links (presets) as copies
        elif src.exists():
            shutil.copy2(src, work / name)
    text = (work / "pyproject.toml").read_text()
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", text)  # ours replaces any other
    (work / "pyproject.toml").write_text(text + _config(target, tests))


def _mutmut(work: Path, *args: str, timeout: float | None = None) -> tuple[int, str]:
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([str(exe), *args], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the run and its test workers
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        return 124, out
    return proc.returncode, out


def _results(work: Path) -> dict[str, list[str]]:
    """mutant names by status (killed, survived, timeout, no tests, not checked, ...)."""
    _, out = _mutmut(work, "results", "--all", "true")
    by: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+__mutmut_\d+):\s*(.+?)\s*$", line)
        if m:
            by.setdefault(m.group(2), []).append(m.group(1))
    return by


def run_file(target: str, tests: list[str], work_root: Path, budget: float, jobs: int,
             show: bool) -> dict[str, list[str]]:
    work = work_root / Path(target).stem.lstrip("_")
    _snapshot(work, target, tests)
    t0 = time.monotonic()
    code, out = _mutmut(work, "run", "--max-children", str(jobs), timeout=budget)
    took = time.monotonic() - t0
    by = _results(work)
    total = sum(len(v) for v in by.values())
    killed = len(by.get("killed", [])) + len(by.get("timeout", []))
    line = f"{target}: {killed} / {total} killed in {took:.0f} s"
    line += "".join(f", {len(v)} {k}" for k, v in sorted(by.items()) if k not in ("killed",))
    if code == 124:
        line += f" (stopped at the {budget:.0f} s budget)"
    elif code != 0:
        line += f" (mutmut exited {code}: {out.strip().splitlines()[-1] if out.strip() else ''})"
    print(line, flush=True)
    for name in by.get("survived", []):
        print(f"  survived: {name}")
        if show:
            print(_mutmut(work, "show", name)[1])
    return by


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="files to mutate (default: every file in FILES)")
    parser.add_argument("--budget", type=float, default=600, help="seconds per file (default 600)")
    parser.add_argument("--jobs", type=int, default=1, help="mutmut worker processes (default 1)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/samtune-mutation"))
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    args = parser.parse_args(argv)
    for target in args.files or list(FILES):
        if target not in FILES:
            parser.error(f"{target} has no test selection in FILES; add it there first")
        run_file(target, FILES[target], args.work, args.budget, args.jobs, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
