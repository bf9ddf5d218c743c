"""``archsearch run`` end to end on Imagenette with the tiny profile: resume, kill, Ctrl-C, error paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from archsearch.train import weights

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
    assert "winner:" in first.stdout and "decided at rung 0 (tiny)" in first.stdout
    for kind in ("width", "width_resolution", "compound"):
        assert f"baseline {kind}:" in first.stdout  # announced before the search ...
        assert f"  {kind} " in first.stdout  # ... and reported with its margin after it
    summary = json.loads((tmp_path / "e2e" / "summary.json").read_text())
    winner = json.loads((tmp_path / "e2e" / "winner.json").read_text())
    jobs = summary["counts"]["trained"]
    assert jobs == len(summary["rungs"][0]) and summary["counts"]["by_rung"] == {"tiny": jobs}
    assert winner["macs"] <= 300_000_000 and winner["fidelity"] == "tiny"
    assert winner["trained_resolution"] == round(winner["config"]["resolution"] * 0.25)
    assert [b["kind"] for b in winner["baselines"]] == ["width", "width_resolution", "compound"]
    assert all(b["margin_interval"] is not None for b in summary["baselines"])
    assert "dashboard:" in first.stdout and (tmp_path / "dashboards" / "e2e.html").stat().st_size > 100_000
    numbers = [t.number for t in load(tmp_path, "e2e").trials]

    again = archsearch(tmp_path, *RUN, "--trials", "2", "--study", "e2e")
    assert again.returncode == 0, again.stderr
    study = load(tmp_path, "e2e")
    assert [t.number for t in study.trials] == numbers  # nothing asked, nothing trained again
    keys = [(t.user_attrs["config_id"], t.user_attrs["rung"], t.user_attrs["seed"])
            for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(keys) == len(set(keys)) == jobs


def test_a_time_budget_plans_the_run_and_a_deciding_rung_decides_it(tmp_path, imagenette_subset):
    """A real run on tiny profiles under a time budget: the plan and the expected interval are printed before
    training, the finalists and the baselines are trained at the deciding rung, and the verdict gives P(best).
    On the Imagenette subset: the same training images as Imagenette's, and 145 validation images for the
    quantized networks to be scored on, not 3,925."""
    proc = archsearch(tmp_path, "run", "--mac-budget", "300M", "--rungs", "tiny,tiny-top", "--finalists", "1",
                      "--time-budget", "5m", "--quiet", "--no-dashboard", "--study", "timed", "--quantize", "int8",
                      "--quantize-method", "minmax", "--objective", "quantized", "--data", str(imagenette_subset))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "time budget 5m:" in out and "finalist(s) and the baselines" in out
    assert "expected margin interval at tiny-top: about +/-" in out
    assert out.index("time budget 5m:") < out.index("winner:")
    summary = json.loads((tmp_path / "timed" / "summary.json").read_text())
    assert summary["settings"]["finalists"] == 1 and summary["decided_at"]["deciding_rung"]
    top = summary["rungs"][1]
    assert sum(j["role"] == "search" for j in top) == 1 + summary["settings"]["repeats"]
    assert {"width", "compound"} <= {k for j in top for k in j["baseline_kinds"]}
    assert summary["top"][0]["p_best"] is not None and "P(best)" in out
    assert "margins' intervals: simultaneous" in out
    # every network trained at the deciding rung keeps its weights under the study folder; screening does not
    assert all(j["weights"] and Path(j["weights"]).parent == tmp_path / "timed" / "weights" for j in top)
    assert all(j["weights"] is None for j in summary["rungs"][0])
    assert len(list((tmp_path / "timed" / "weights").glob("*.pt"))) == len({j["weights"] for j in top})
    kept = weights.load(top[0]["weights"])
    assert kept.config.replace(num_classes=1000).id == top[0]["config_id"] and kept.config.num_classes == 10
    assert kept.resolution == top[0]["trained_resolution"]
    floats = {r["trial"]: r["float_top1"] for r in summary["quantized"]["networks"]}
    assert kept.meta["top1"] == floats[top[0]["trial"]]  # the rung's scores are the quantized ones: the objective
    shipped = archsearch(tmp_path, "export", "--study", "timed", "--trial", str(top[0]["trial"]),
                         "--format", "weights", "--out", str(tmp_path / "shipped"))
    assert shipped.returncode == 0, shipped.stderr
    assert weights.load(next((tmp_path / "shipped").glob("*.pt"))).meta == kept.meta
    # every deciding network was quantized (int8 on ONNX Runtime) and the verdict was taken on those scores
    quantized = summary["quantized"]
    assert quantized["objective"] == "quantized" and quantized["bits"] == 8
    assert {r["trial"] for r in quantized["networks"]} == {j["trial"] for j in top}
    assert "quantized (minmax, int8 on ONNX Runtime); the verdict above is taken on the quantized networks" in out
    scores = [r["quantized_top1"] for r in quantized["networks"] if r["config_id"] == summary["winner"]["config_id"]]
    assert abs(summary["winner"]["accuracy"] - sum(scores) / len(scores)) < 1e-12
    int8 = archsearch(tmp_path, "export", "--study", "timed", "--format", "onnx-int8", "--out", str(tmp_path / "x"))
    assert int8.returncode == 0, int8.stderr
    assert next((tmp_path / "x").glob("*-int8.onnx")).stat().st_size > 0
    screened = summary["rungs"][0][0]["trial"]
    refused = archsearch(tmp_path, "export", "--study", "timed", "--trial", str(screened), "--format", "weights")
    assert refused.returncode == 2 and "has no kept weights" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    unquantizable = archsearch(tmp_path, "quantize", "--study", "timed", "--trial", str(screened))
    assert unquantizable.returncode == 2 and len(unquantizable.stderr.strip().splitlines()) == 1
    assert f"trial {screened} of study 'timed' has no kept weights" in unquantizable.stderr


def _wait_for_running_search_trial(studies, name, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            trials = load(studies, name).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study does not exist yet
            trials = []
        if any(t.user_attrs.get("role") == "search" and "trained_resolution" in t.user_attrs for t in trials):
            return  # its job is drawn (the attributes are written just before training begins)
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
    assert redone[0].user_attrs["config"] == killed[0].user_attrs["config"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert [t.user_attrs["config_id"] for t in complete][: len(done_before)] == done_before
    keys = [(t.user_attrs["config_id"], t.user_attrs["rung"], t.user_attrs["seed"]) for t in complete]
    assert len(set(keys)) == len(keys)
    assert len({t.user_attrs["config_id"] for t in complete if t.user_attrs["role"] == "search"}) == 2


def _hears_ctrl_c() -> None:
    """In the child, before exec: Ctrl-C handled even where this runner ignores it (a background job's SIGINT
    is ignored, and Python keeps an inherited SIG_IGN)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_cleanly(tmp_path, imagenette):
    proc = subprocess.Popen([sys.executable, "-m", "archsearch", *RUN, "--trials", "2", "--study", "sigint"],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_hears_ctrl_c)
    _wait_for_running_search_trial(tmp_path, "sigint", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    _assert_stopped_cleanly(tmp_path, "sigint", proc.returncode, err)


CTRL_C_AT_FORK = """
import os, signal, sys
from archsearch.cli import main

sent = []

def ctrl_c():  # once: as the first job's decoding pool forks its first worker (the run's first fork)
    if not sent:
        sent.append(True)
        os.kill(os.getpid(), signal.SIGINT)

os.register_at_fork(after_in_parent=ctrl_c)
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_the_pool_forks_stops_cleanly(tmp_path, imagenette):
    """Ctrl-C was ignored when it landed while the first job's data store was decoded: handled inside
    os.fork's at-fork hooks, the KeyboardInterrupt was dropped as unraisable and the run finished (exit 0)."""
    env = {**_env(tmp_path), "ARCHSEARCH_CACHE": str(tmp_path / "cache")}  # a fresh cache: the job decodes
    done = subprocess.run([sys.executable, "-c", CTRL_C_AT_FORK, *RUN, "--trials", "2", "--study", "fork"],
                          env=env, capture_output=True, text=True, timeout=600, check=False, preexec_fn=_hears_ctrl_c)
    _assert_stopped_cleanly(tmp_path, "fork", done.returncode, done.stderr)
    assert "Exception ignored" not in done.stderr


def _assert_stopped_cleanly(studies, name, returncode, err):
    """Exit 130 without a traceback; the interrupted job failed and queued again; the summary written."""
    assert returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    study = load(studies, name)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["interrupted"]
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert len(queued) == 1 and queued[0].user_attrs["retry_of"] == failed[0].number
    assert queued[0].user_attrs["config"] == failed[0].user_attrs["config"]
    assert (studies / name / "summary.json").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--mac-budget", "lots"], "--mac-budget: cannot read 'lots'"),
        (["--mac-budget", "5M"], "is below the cheapest config of the space, v2-r128-w0.25-m0.5-a0.25-c1000"),
        (["--mac-budget", "300M,300M"], "--mac-budget: 300M given twice; each budget once"),
        (["--mac-budget", "0,100M"], "--mac-budget: '0' is not a positive number of MACs"),
        (["--mac-budget", "100M,abc"], "--mac-budget: cannot read 'abc'"),
        (["--mac-budget", "100M,"], "--mac-budget: '100M,' has an empty entry"),
        (["--mac-budget", "5M,300M"], "--mac-budget: 5M is below every config of the space"),
        (["--mac-budget", "300M", "--trials", "0"], "--trials: 0 is not a positive number"),
        (["--mac-budget", "300M", "--data", "/nonexistent"], "/nonexistent is not a directory"),
        (["--mac-budget", "300M", "--strategy", "bayes"], "argument --strategy: invalid choice"),
        (["--mac-budget", "300M", "--storage", "postgresql://u:secret@127.0.0.1:1/db"], "--storage: cannot open"),
        (["--mac-budget", "300M", "--rungs", "smoke,nope"], "--rungs: unknown profile 'nope'"),
        (["--mac-budget", "300M", "--rungs", "smoke,smoke"], "--rungs: a profile appears twice"),
        (["--mac-budget", "300M", "--profile", "tiny", "--rungs", "smoke,short"], "--profile and --rungs: give one"),
        (["--mac-budget", "300M", "--profile", "smoke", "--strategy", "nsga3", "--rungs", "smoke"],
         "--profile and --rungs"),
        (["--mac-budget", "300M", "--rungs", "tiny,smoke", "--strategy", "nsga3"], "--strategy nsga3 searches one"),
        (["--mac-budget", "300M", "--promote", "1.5"], "--promote: 1.5 is not in (0, 1]"),
        (["--mac-budget", "300M", "--top-seeds", "0"], "--top-seeds: 0 is not a positive number"),
        (["--mac-budget", "300M", "--time-budget", "0"], "--time-budget: '0' is not a positive duration"),
        (["--mac-budget", "300M", "--time-budget=-5m"], "--time-budget: '-5m' is not a duration"),
        (["--mac-budget", "300M", "--time-budget", "5 parsecs"], "--time-budget: '5 parsecs' is not a duration"),
        (["--mac-budget", "300M", "--time-budget", "1s"], "--time-budget: 1 s is shorter than a screen of 4 networks"),
        (["--mac-budget", "300M", "--finalists", "2"], "--finalists: a deciding rung needs a screening rung"),
        (["--mac-budget", "300M", "--rungs", "tiny,tiny-top", "--finalists", "1", "--repeats", "2"],
         "need 0 <= repeats <= finalists"),
    ],
)
def test_run_errors_are_one_line(tmp_path, args, needle):
    default = [] if "--rungs" in args or "--profile" in args else ["--profile", "tiny"]
    proc = archsearch(tmp_path, "run", *args, *default, "--quiet")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "secret" not in proc.stderr


def test_budget_above_the_space_warns_and_runs(tmp_path, imagenette):
    # a small space (its dearest config is far below 2G), so that no 100G-scale baseline is trained
    space = tmp_path / "small.toml"
    space.write_text('family = "v2"\nnum_classes = 1000\n[resolution]\nmin = 128\nmax = 160\nstep = 32\n'
                     '[width]\nmin = 0.25\nmax = 0.5\nstep = 0.125\n[mv2_depth]\nmin = 0.5\nmax = 1.0\nstep = 0.5\n'
                     '[vit_depth]\nmin = 0.5\nmax = 1.0\nstep = 0.5\n')
    proc = archsearch(tmp_path, "run", "--mac-budget", "2G", "--space", str(space), "--profile", "tiny", "--trials",
                      "1", "--quiet", "--no-dashboard", "--study", "big")
    assert proc.returncode == 0, proc.stderr
    assert "warning: the budget is above the most expensive config of the space" in proc.stderr
    assert "winner:" in proc.stdout
