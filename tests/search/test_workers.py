"""Parallel workers, killed workers, Ctrl-C, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from samtune.search import search

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture
def cli():
    """Start ``samtune`` commands; any still running when the test ends is killed."""
    procs = []

    def start(*args, **kw):
        # SIGINT as a terminal's Ctrl-C delivers it: a background job (e.g. `.ci/run &`) passes
        # it on ignored, and a Python started that way never raises KeyboardInterrupt
        procs.append(subprocess.Popen([sys.executable, "-m", "samtune.cli", *args],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                                      **kw))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_for(predicate, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _trials(storage, name, states=None):
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return []
    return study.get_trials(states=states)


@pytest.mark.slow
def test_two_workers_reach_the_exact_trial_count(tmp_path):
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    rec = search("builtin:wine", trials=5, epochs=2, workers=2, confirm_seeds=1, top_k=1,
                 space="quick", storage=storage, study="w", out=str(tmp_path / "out"), progress=False)
    trials = _trials(storage, "w")
    assert len([t for t in trials if t.state in FINISHED]) == 5
    assert len({t.user_attrs["worker_pid"] for t in trials if t.state in FINISHED}) == 2
    assert rec.study["n_complete"] + rec.study["n_pruned"] == 5


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_study_still_finishes(tmp_path, cli):
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    # no pruning: every trial runs its 3 epochs, so the kill lands inside a trial
    proc = cli("search", "--data", "builtin:digits", "--trials", "6", "--epochs", "3", "--workers", "2",
                "--heartbeat", "1", "--space", "quick", "--confirm-seeds", "1", "--top-k", "1",
                "--pruner", "none", "--study", "k", "--storage", storage, "--out",
                str(tmp_path / "out"), "--quiet", cwd=tmp_path)

    def running_in_worker():
        for t in _trials(storage, "k", (TrialState.RUNNING,)):
            pid = t.user_attrs.get("worker_pid")
            if pid and pid != proc.pid:
                return t.number, pid
        return None

    _, pid = _wait_for(running_in_worker, what="a running trial in a worker")
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = _trials(storage, "k")
    # the trial the worker was running when it died (the one seen running may have just ended,
    # and the next one not yet claimed: an orphan without a worker_pid, failed after its grace)
    (victim,) = [t.number for t in trials if t.state == TrialState.FAIL]
    assert trials[victim].user_attrs.get("worker_pid") in (pid, None)
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert retried and retried[0].state in FINISHED
    assert len([t for t in trials if t.state in FINISHED]) == 6
    assert json.loads((tmp_path / "out" / "recommendation.json").read_text())["verdict"]
    assert f"worker {pid} was killed by signal 9" in err


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path, cli):
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    # unpruned trials: long enough for the interrupt to land inside one
    args = ["search", "--data", "builtin:digits", "--trials", "4", "--epochs", "3", "--space", "quick",
            "--confirm-seeds", "1", "--top-k", "1", "--pruner", "none", "--study", "c",
            "--storage", storage, "--out", str(tmp_path / "out")]
    proc = cli(*args, cwd=tmp_path)

    def one_finished_one_running():  # running: inside the objective (not still in Optuna's ask)
        trials = _trials(storage, "c")
        return any(t.state in FINISHED for t in trials) and any(
            t.state == TrialState.RUNNING and "worker_pid" in t.user_attrs for t in trials)

    _wait_for(one_finished_one_running, what="one finished and one running trial")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "run the same command again to resume" in err and "Traceback" not in err
    trials = _trials(storage, "c")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "interrupted" in failed[0].user_attrs["fail_reason"]
    done_before = {t.number: t.value for t in trials if t.state in FINISHED}
    again = subprocess.run([sys.executable, "-m", "samtune.cli", *args], capture_output=True,
                           text=True, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    trials = _trials(storage, "c")
    assert len([t for t in trials if t.state in FINISHED]) == 4
    assert all(by.value == done_before[n] for n, by in ((t.number, t) for t in trials) if n in done_before)


@pytest.mark.slow
def test_same_seed_one_worker_gives_identical_trials(tmp_path):
    results = []
    for run in ("a", "b"):
        storage = f"sqlite:///{tmp_path / (run + '.db')}"
        search("builtin:wine", trials=10, epochs=2, confirm_seeds=1, top_k=1, seed=3,
               storage=storage, study="s", out=str(tmp_path / run), progress=False)
        results.append([(t.params, t.state, t.value) for t in _trials(storage, "s")])
    assert results[0] == results[1]
    assert len({json.dumps(p, sort_keys=True) for p, _, _ in results[0]}) > 5


@pytest.mark.parametrize("bad", ["nope", "postgresql://x"])
def test_worker_refuses_what_it_cannot_join(tmp_path, bad, capsys):
    from samtune.cli import main

    storage = f"sqlite:///{tmp_path / 'j.db'}" if bad == "nope" else bad
    code = main(["worker", "--study", "nope", "--storage", storage])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_trial_taken_twice_counts_once_and_the_loser_goes_on(tmp_path, capsys):
    # Two processes can pop the same enqueued trial; the second to finish cannot record it.
    from samtune.search._workers import run_trials

    storage = f"sqlite:///{tmp_path / 'd.db'}"
    study = optuna.create_study(study_name="d", storage=storage, direction="maximize")
    other = optuna.load_study(study_name="d", storage=storage)  # the other worker's handle
    calls = []

    def objective(trial):
        calls.append(trial.number)
        if len(calls) == 1:  # meanwhile the other worker finished this very trial
            other.tell(trial.number, 0.5)
        return 0.9

    run_trials(study, objective, quota=3, target=3, timeout=None, callbacks=[])
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[0].value == 0.5  # the first result stands
    assert calls == [0, 1, 2]  # after the duplicate, this worker went on to the target
    assert "was finished elsewhere" in capsys.readouterr().err


def _pop_all(url, name, barrier, out):
    from samtune.search._storage import open_storage

    study = optuna.load_study(study_name=name, storage=open_storage(url, create=False))
    barrier.wait()
    popped = []
    while (trial_id := study._pop_waiting_trial_id()) is not None:
        popped.append(trial_id)
    out.put(popped)


@pytest.mark.slow
def test_each_enqueued_trial_is_popped_by_one_process(tmp_path):
    # SQLite's deferred transactions let two processes pop the same waiting trial
    # (optuna/optuna#4621); samtune's storage begins them immediately.
    import multiprocessing as mp

    from samtune.search._storage import open_storage

    url = f"sqlite:///{tmp_path / 'q.db'}"
    study = optuna.create_study(study_name="q", storage=open_storage(url))
    for i in range(120):
        study.enqueue_trial({"x": i})
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_pop_all, args=(url, "q", barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    popped = [t for _ in procs for t in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert len(popped) == 120 and len(set(popped)) == 120


def _heartbeat_study(tmp_path, name):
    from samtune.search._storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / (name + '.db')}", heartbeat=1)
    return optuna.create_study(study_name=name, storage=storage, direction="maximize")


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() stands in for a worker here
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    # Optuna's heartbeat thread writes after the trial started: a worker killed in between left
    # the trial running for ever (no heartbeat, so never stale), and the search hung on it.
    import socket

    from samtune.search._workers import fail_orphans

    study = _heartbeat_study(tmp_path, "o")
    claimed, unclaimed, alive = study.ask(), study.ask(), study.ask()
    pid = _dead_pid()
    for trial, owner in ((claimed, pid), (alive, os.getpid())):
        trial.set_user_attr("worker_host", socket.gethostname())
        trial.set_user_attr("worker_pid", owner)
    assert fail_orphans(study, grace=3600, dead_pids=[pid]) == [claimed.number]
    assert fail_orphans(study, grace=0) == [unclaimed.number]  # never claimed: its process died
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]
    assert trials[0].user_attrs["fail_reason"] == "its process died"
    retries = {t.system_attrs["failed_trial"]: t for t in trials[3:]}
    assert set(retries) == {claimed.number, unclaimed.number}
    assert all(t.state == TrialState.WAITING for t in retries.values())
    assert "worker_pid" not in retries[claimed.number].user_attrs  # not the failure's attributes
    assert "fail_reason" not in retries[claimed.number].user_attrs


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_process_that_finds_the_rest_running_elsewhere_waits_instead_of_spinning(tmp_path):
    # The target is 2, one trial is complete and one is running in a process that died without
    # a heartbeat: every new trial here is surplus. Before, run_trials asked for surplus trials
    # in a tight loop (thousands of FAIL trials) for ever.
    from samtune.search._objective import TrialSurplus, _claims_before
    from samtune.search._workers import run_trials

    study = _heartbeat_study(tmp_path, "s")
    study.add_trial(optuna.create_trial(value=0.5))
    study.ask()  # claimed by nobody: its process died before the objective started
    ran = []

    def objective(trial):
        if _claims_before(trial) >= 2:
            trial.set_user_attr("fail_reason", "surplus: the study already had 2 trials")
            raise TrialSurplus(trial.number)
        ran.append(trial.number)
        return 0.9

    t0 = time.monotonic()
    run_trials(study, objective, quota=None, target=2, timeout=60, callbacks=[])
    trials = study.get_trials()
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2
    assert len([t for t in trials if "surplus" in t.user_attrs.get("fail_reason", "")]) == 1
    assert ran == [trials[-1].number] and trials[-1].system_attrs["failed_trial"] == 1
    assert time.monotonic() - t0 < 30  # the orphan is failed 3 heartbeats after it started
