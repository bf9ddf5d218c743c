"""Many workers on one study in a real PostgreSQL server: exact trial counts, dead workers, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib

import optuna
import pytest
from helpers.postgres import PostgresServer, find_bin
from optuna.trial import TrialState

from archsearch.model.space import DEFAULT_SPACES
from archsearch.search.settings import StudySettings
from archsearch.search.study import exclusive_run, make_storage, open_study

pytestmark = pytest.mark.slow
RUN = ["run", "--mac-budget", "300M", "--profile", "tiny", "--quiet", "--no-dashboard"]


@pytest.fixture(scope="module")
def postgres_url():
    if not (find_bin("initdb") and find_bin("pg_ctl")):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) found: apt-get install postgresql")
    server = PostgresServer()
    url = server.start()
    yield url
    server.stop()


def spawn(tmp_path, *args, heartbeat="30", extra_env=None):
    # One thread per worker: several torch processes on 2 cores must not oversubscribe them.
    env = {**os.environ, "ARCHSEARCH_STUDIES": str(tmp_path), "ARCHSEARCH_HEARTBEAT_S": heartbeat,
           "OMP_NUM_THREADS": "1", **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "archsearch", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def load(url, name):
    """The study through one storage per server: a storage per call leaves its connection pool open until the garbage
    collector finds it, and polling every 0.3 s then exhausts the server's 100 connections."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.RDBStorage(url)
    return optuna.load_study(study_name=name, storage=_STORAGES[url])


def wait_for(predicate, timeout=240, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except KeyError:  # the study does not exist yet
            pass
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def job_keys(study, states=(TrialState.COMPLETE,)):
    return [(t.user_attrs["config_id"], t.user_attrs["rung"], t.user_attrs["seed"]) for t in study.get_trials(states=states)]


def proposals(study):
    return {t.user_attrs["config_id"] for t in study.get_trials(states=(TrialState.COMPLETE,))
            if t.user_attrs["role"] == "search" and t.user_attrs["rung"] == 0}


def test_three_workers_finish_exactly_the_requested_trials(tmp_path, postgres_url, imagenette):
    name = "three"
    first = spawn(tmp_path, *RUN, "--trials", "4", "--study", name, "--storage", postgres_url)
    wait_for(lambda: load(postgres_url, name), what="the study")
    others = [spawn(tmp_path, "worker", "--study", name, "--storage", postgres_url, "--quiet") for _ in range(2)]
    for proc in (first, *others):
        finish(proc)
    study = load(postgres_url, name)
    keys = job_keys(study)
    assert len(keys) == len(set(keys))  # no job trained twice
    assert len(proposals(study)) == 4
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len({t.user_attrs["worker"] for t in complete}) >= 2

    status = subprocess.run([sys.executable, "-m", "archsearch", "status", "--study", name, "--storage",
                             postgres_url, "--json"], capture_output=True, text=True)
    report = json.loads(status.stdout)
    assert sum(w["done"] for w in report["workers"].values()) == len(keys)
    assert report["proposals_done"] == report["proposals_target"] == 4


def test_dead_worker_job_is_failed_and_redone(tmp_path, postgres_url, imagenette):
    name = "dead"
    keeper = spawn(tmp_path, *RUN, "--trials", "3", "--study", name, "--storage", postgres_url, heartbeat="1")
    wait_for(lambda: load(postgres_url, name), what="the study")
    victim = spawn(tmp_path, "worker", "--study", name, "--storage", postgres_url, "--quiet", heartbeat="1")
    mine = lambda t: t.user_attrs.get("worker", "").endswith(f":{victim.pid}")  # noqa: E731
    wait_for(lambda: any(mine(t) for t in load(postgres_url, name).get_trials(states=(TrialState.RUNNING,))),
             what="a job of the second worker")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish(keeper)
    study = load(postgres_url, name)
    dead = [t for t in study.trials if mine(t) and t.state == TrialState.FAIL]
    assert len(dead) == 1
    redone = [t for t in study.trials if t.user_attrs.get("retry_of") == dead[0].number]
    assert len(redone) == 1 and redone[0].state == TrialState.COMPLETE
    assert redone[0].user_attrs["config"] == dead[0].user_attrs["config"]
    assert (redone[0].user_attrs["rung"], redone[0].user_attrs["seed"]) == (dead[0].user_attrs["rung"],
                                                                              dead[0].user_attrs["seed"])
    assert len(proposals(study)) == 3
    keys = job_keys(study)
    assert len(keys) == len(set(keys))


SLOW_ASK = """
import time
import archsearch.gp.acquisition as acquisition

_ask = acquisition.GPProposer.ask


def slow_ask(self, *args, **kwargs):
    time.sleep(600)  # a GP fit that takes long: the test kills the worker in here
    return _ask(self, *args, **kwargs)


acquisition.GPProposer.ask = slow_ask
"""


def test_worker_killed_inside_a_slow_proposal_leaves_no_trial_running(tmp_path, postgres_url, imagenette):
    """The trial exists (and beats) before the strategy draws its config: killed there, it stops beating,
    another worker fails it, and the study still ends with exactly the proposals it asked for."""
    name = "slowask"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_ASK)
    keeper = spawn(tmp_path, *RUN, "--trials", "3", "--study", name, "--storage", postgres_url, heartbeat="1")
    wait_for(lambda: load(postgres_url, name), what="the study")
    victim = subprocess.Popen(
        [sys.executable, "-m", "archsearch", "worker", "--study", name, "--storage", postgres_url, "--quiet"],
        env={**os.environ, "ARCHSEARCH_STUDIES": str(tmp_path), "ARCHSEARCH_HEARTBEAT_S": "1",
             "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{hooks}:{os.environ.get('PYTHONPATH', '')}"},
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def drawing():  # a running trial that beats but has no job yet, for long: the victim inside its proposal
        running = load(postgres_url, name).get_trials(states=(TrialState.RUNNING,))
        return [t for t in running if "config" not in t.user_attrs and t.user_attrs.get("beat", 0) >= 3]

    wait_for(lambda: drawing(), what="the second worker inside a proposal", timeout=400)
    (orphan,) = drawing()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish(keeper)
    study = load(postgres_url, name)
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert not [t for t in study.trials if t.user_attrs.get("retry_of") == orphan.number]  # nothing to redo
    assert len(proposals(study)) == 3
    keys = job_keys(study)
    assert len(keys) == len(set(keys))


SLOW_PROMOTION = """
import os
import time
import archsearch.search.loop as loop

_call = loop.TrainingEvaluator.__call__
STUCK = os.environ.get("HOOK_STUCK") == "1"


def call(self, job):
    if job.role == "search" and job.rung == 1:
        time.sleep(600 if STUCK else 5)  # stuck: the test kills this worker; else leave the other time to pick
    return _call(self, job)


loop.TrainingEvaluator.__call__ = call
"""


def test_a_promotion_is_trained_once_even_when_its_worker_dies_mid_promotion(tmp_path, postgres_url, imagenette):
    """Two workers on a two-rung study that continues rung 0's schedule: every promotion (rung-1 job) is claimed
    by exactly one worker and continues from its rung-0 checkpoint; the one a killed worker held is failed by
    the other and trained once, by the other, from the same checkpoint; no checkpoint is left at the end."""
    name = "promote"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_PROMOTION)
    env = {"PYTHONPATH": f"{hooks}:{os.environ.get('PYTHONPATH', '')}"}
    args = ["run", "--mac-budget", "300M", "--rungs", "tiny-top-e1,tiny-top", "--promote", "0.5", "--trials", "6", "--quiet",
            "--no-dashboard", "--study", name, "--storage", postgres_url]
    keeper = spawn(tmp_path, *args, heartbeat="1", extra_env=env)
    wait_for(lambda: load(postgres_url, name), what="the study")
    victim = spawn(tmp_path, "worker", "--study", name, "--storage", postgres_url, "--quiet", heartbeat="1",
                   extra_env={**env, "HOOK_STUCK": "1"})
    mine = lambda t: t.user_attrs.get("worker", "").endswith(f":{victim.pid}")  # noqa: E731
    held = lambda: [t for t in load(postgres_url, name).get_trials(states=(TrialState.RUNNING,))  # noqa: E731
                    if mine(t) and t.user_attrs.get("rung") == 1 and t.user_attrs.get("role") == "search"]
    wait_for(lambda: held(), what="a promotion held by the second worker", timeout=500)
    (stuck,) = held()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish(keeper)
    study = load(postgres_url, name)
    assert study.trials[stuck.number].state == TrialState.FAIL
    (redone,) = [t for t in study.trials if t.user_attrs.get("retry_of") == stuck.number]
    assert redone.state == TrialState.COMPLETE and not mine(redone)
    promotions = [k for k in job_keys(study) if k[1] == 1 and k[0] in proposals(study)]
    assert len(promotions) == len(set(promotions)) == 3  # ceil(6 * 0.5), each trained once
    promoted = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
                if t.user_attrs["rung"] == 1 and t.user_attrs["role"] == "search"]
    assert redone in promoted and [t.user_attrs["record"]["resumed_from_epoch"] for t in promoted] == [1, 1, 1]
    assert not list((tmp_path / name / "checkpoints").iterdir())
    continued = [t for t in study.trials if t.state == TrialState.COMPLETE and t.user_attrs["record"]["resumed_from_epoch"]]
    assert json.loads((tmp_path / name / "summary.json").read_text())["counts"]["continued"] == len(continued) >= 3
    keys = job_keys(study)
    assert len(keys) == len(set(keys))
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


@pytest.mark.parametrize("url, needle", [
    ("foo://nowhere/db", "--storage: cannot open foo://nowhere/db"),
    ("postgresql://archsearch:hunter2@127.0.0.1:1/archsearch", "--storage: cannot open postgresql://archsearch:***@"),
])
def test_bad_storage_is_one_line(tmp_path, url, needle):
    proc = spawn(tmp_path, "worker", "--study", "x", "--storage", url)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "hunter2" not in err


def test_unknown_study_is_one_line(tmp_path, postgres_url):
    proc = spawn(tmp_path, "status", "--study", "missing", "--storage", postgres_url)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "no study named 'missing'" in err and len(err.strip().splitlines()) == 1


def test_second_local_process_on_sqlite_is_refused(tmp_path, isolated_studies):
    url = f"sqlite:///{tmp_path}/archsearch.db"
    from archsearch.search.fidelity import ladder

    settings = StudySettings(space=tomllib.loads(DEFAULT_SPACES["v2"].read_text()), mac_budget=300_000_000,
                             ladder=ladder(["tiny"]).to_dict(), data=str(tmp_path), strategy="gp", seed=0, trials=2)
    open_study("busy", make_storage(url), settings)
    with exclusive_run("busy", url):
        proc = spawn(isolated_studies, "worker", "--study", "busy", "--storage", url)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "already being run by another process" in err and "postgresql" in err
