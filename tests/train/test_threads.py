"""Torch threads shared among the archsearch workers of a host (issue 14, item 7)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from archsearch.train import threads

WORKER = """
import sys, time
from archsearch.train import threads
choice = threads.join(None)
print(choice.threads, choice.workers, flush=True)
time.sleep(600)
"""


@pytest.fixture
def registry(tmp_path):
    """The test's own registry (conftest's isolated_workers), this process not registered in it."""
    assert threads._registration is None
    return threads.registry_dir()


def _spawn(env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # registered
    return proc


def _wait_for(count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(threads.live_workers()) != count:
        assert time.monotonic() < deadline, f"{len(threads.live_workers())} live workers, expected {count}"
        time.sleep(0.05)


def test_registry_counts_live_processes_and_forgets_dead_ones(registry):
    env = {**os.environ, threads.REGISTRY_ENV: str(registry)}
    env.pop("OMP_NUM_THREADS", None)  # the share, not an explicit request
    procs = [_spawn(env), _spawn(env)]
    try:
        assert len(threads.live_workers()) == 2
        mine = threads.cores_available()
        choice = threads.threads_for_this_worker(None)  # unregistered: counts itself as a third
        assert choice.workers == 3 and choice.threads == max(1, len(mine) // 3)
        procs[0].kill()
        procs[0].wait()
        _wait_for(1)  # the kernel released the dead process's lock: its file is dropped
        assert len(list(registry.glob(f"*{threads.SUFFIX}"))) == 1
        assert threads.threads_for_this_worker(None).workers == 2
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    _wait_for(0)
    assert not list(registry.iterdir())


def test_joining_registers_once_and_sets_torch_threads(registry, monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    choice = threads.join(None)
    assert choice.workers == 1 and choice.threads == len(threads.cores_available())
    assert torch.get_num_threads() == choice.threads and "shared by 1 archsearch worker" in choice.note()
    assert threads.join(1).threads == 1 == torch.get_num_threads()  # a request wins; still one registration
    assert len(threads.live_workers()) == 1
    assert threads.rebalance().requested == 1


def test_rebalance_does_nothing_for_a_process_that_never_joined(registry):
    assert threads.rebalance() is None and not registry.exists()


@pytest.mark.parametrize("cpus, others, expected", [
    ({0, 1, 2, 3}, [{0, 1, 2, 3}], (4, 1)),
    ({0, 1, 2, 3}, [{0, 1, 2, 3}, {0, 1, 2, 3}], (2, 2)),
    ({0, 1, 2, 3}, [{0, 1, 2, 3}] * 3, (1, 3)),
    ({0, 1}, [{0, 1}] * 5, (1, 5)),  # never below one thread
    ({0, 1}, [{0, 1}, {2, 3}], (2, 1)),  # a worker pinned to other cores does not count
    ({0, 1}, [{0, 1}, {1, 2}, None], (1, 3)),  # overlapping and unreadable ones do
])
def test_share(cpus, others, expected):
    assert threads.share(cpus, others) == expected


def test_omp_num_threads_counts_as_a_request(registry, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.threads_for_this_worker(None).threads == 3
    assert threads.threads_for_this_worker(2).threads == 2  # --threads wins over the environment


@pytest.mark.parametrize("command, value", [
    (["run", "--mac-budget", "300M", "--profile", "tiny"], "0"),
    (["run", "--mac-budget", "300M", "--profile", "tiny"], "-2"),
    (["run", "--mac-budget", "300M", "--profile", "tiny"], "1.5"),
    (["worker", "--study", "s"], "many"),
    (["train", "--preset", "mobilevitv2_050", "--profile", "tiny"], "0"),
    (["bench-table", "--out", "t.csv", "--profile", "tiny"], "auto2"),
])
def test_bad_threads_is_one_line(command, value, tmp_path):
    env = {**os.environ, threads.REGISTRY_ENV: str(tmp_path / "workers")}
    proc = subprocess.run([sys.executable, "-m", "archsearch", *command, f"--threads={value}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"--threads: '{value}' is not a positive whole number or 'auto'" in lines[0]
    assert not (tmp_path / "workers").exists() and not list(tmp_path.glob("*.csv"))  # refused before any work
