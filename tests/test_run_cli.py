"""``archsearch run`` end to end on Imagenette with the tiny profile: resume, kill, Ctrl-C, error paths."""

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


pytestmark = pytest.mark.slow


def _env(studies):
    return {**os.environ, "ARCHSEARCH_STUDIES": str(studies), "PYTHONUNBUFFERED": "1"}


def archsearch(studies, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "archsearch", *args], capture_output=True, text=True,
                          env=_env(studies), timeout=timeout)


def load(studies, name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{studies}/archsearch.db")


RUN = ["run", "--mac-budget", "300M", "--profile", "tiny", "--quiet"]


def test_run_then_resume(tmp_path, imagenette):
    first = archsearch(tmp_path, *RUN, "--trials", "2", "--study", "e2e")
    assert first.returncode == 0, first.stderr
    assert "winner:" in first.stdout and "baseline:" in first.stdout and "winner - baseline" in first.stdout
    summary = json.loads((tmp_path / "e2e" / "summary.json").read_text())
    winner = json.loads((tmp_path / "e2e" / "winner.json").read_text())
    assert summary["counts"]["trained"] == 3 and winner["macs"] <= 300_000_000
    assert winner["fidelity"]["name"] == "tiny"
    assert "dashboard:" in first.stdout and (tmp_path / "dashboards" / "e2e.html").stat().st_size > 100_000
    numbers = [t.number for t in load(tmp_path, "e2e").trials]

    again = archsearch(tmp_path, *RUN, "--trials", "2", "--study", "e2e")
    assert again.returncode == 0, again.stderr
    study = load(tmp_path, "e2e")
    assert [t.number for t in study.trials] == numbers  # nothing asked, nothing trained again
    ids = [t.user_attrs["config_id"] for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(ids) == len(set(ids)) == 3


def _wait_for_running_search_trial(studies, name, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            trials = load(studies, name).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study does not exist yet
            trials = []
        if any(t.user_attrs.get("role") == "search" and t.user_attrs.get("cached") is False for t in trials):
            return  # its training has begun: "cached" is set just before the evaluator is called
        time.sleep(0.3)
    pytest.fail("no search trial started in time")


def test_killed_mid_trial_then_resumed_loses_nothing(tmp_path, imagenette):
    proc = subprocess.Popen([sys.executable, "-m", "archsearch", *RUN, "--trials", "2", "--study", "kill"],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_running_search_trial(tmp_path, "kill", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = load(tmp_path, "kill")
    killed = [t for t in before.trials if t.state == TrialState.RUNNING]
    done_before = [t.user_attrs["config_id"] for t in before.trials if t.state == TrialState.COMPLETE]
    assert len(killed) == 1

    resumed = archsearch(tmp_path, *RUN, "--trials", "2", "--study", "kill")
    assert resumed.returncode == 0, resumed.stderr
    assert "interrupted by an earlier run" in resumed.stdout
    study = load(tmp_path, "kill")
    assert study.trials[killed[0].number].state == TrialState.FAIL
    redone = [t for t in study.trials if t.user_attrs.get("retry_of") == killed[0].number]
    assert len(redone) == 1 and redone[0].state == TrialState.COMPLETE and redone[0].params == killed[0].params
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert [t.user_attrs["config_id"] for t in complete][: len(done_before)] == done_before
    assert len({t.user_attrs["config_id"] for t in complete}) == len(complete) == 3


def test_ctrl_c_stops_cleanly(tmp_path, imagenette):
    proc = subprocess.Popen([sys.executable, "-m", "archsearch", *RUN, "--trials", "2", "--study", "sigint"],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_running_search_trial(tmp_path, "sigint", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    study = load(tmp_path, "sigint")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["interrupted"]
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert len(queued) == 1 and queued[0].system_attrs["fixed_params"] == failed[0].params
    assert (tmp_path / "sigint" / "summary.json").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--mac-budget", "lots"], "--mac-budget: cannot read 'lots'"),
        (["--mac-budget", "5M"], "is below the cheapest config of the space, v2-r128-w0.25-m0.5-a0.25-c1000"),
        (["--mac-budget", "300M", "--trials", "0"], "--trials: 0 is not a positive number"),
        (["--mac-budget", "300M", "--data", "/nonexistent"], "/nonexistent is not a directory"),
        (["--mac-budget", "300M", "--strategy", "bayes"], "argument --strategy: invalid choice"),
        (["--mac-budget", "300M", "--storage", "postgresql://u:secret@127.0.0.1:1/db"], "--storage: cannot open"),
    ],
)
def test_run_errors_are_one_line(tmp_path, args, needle):
    proc = archsearch(tmp_path, "run", *args, "--profile", "tiny", "--quiet")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "secret" not in proc.stderr


def test_budget_above_the_space_warns_and_runs(tmp_path, imagenette):
    proc = archsearch(tmp_path, "run", "--mac-budget", "100G", "--profile", "tiny", "--trials", "1", "--quiet",
                      "--study", "big")
    assert proc.returncode == 0, proc.stderr
    assert "warning: the budget is above the most expensive config of the space" in proc.stderr
