"""Torch threads for a training process: the cores it may use, shared among the archsearch workers on the host.

Two processes that each take torch's default threads (one per core) oversubscribe a host: on a 2-core machine
one smoke trial of two concurrent workers took 8.5 minutes instead of about half a minute. So each training
process joins a host-wide registry -- one file per process in a per-user folder, held under an exclusive
``flock`` that the kernel releases when the process dies, however it dies -- and takes its share of the cores
it may run on (``os.sched_getaffinity``): those cores divided by the live workers whose cores overlap them, at
least 1. ``rebalance`` re-applies the share (the search loop calls it before every trial), so workers that
join or leave later are taken into account. An explicit ``--threads N`` (or ``$OMP_NUM_THREADS``) wins.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

REGISTRY_ENV = "ARCHSEARCH_WORKERS_DIR"
SUFFIX = ".worker"


@dataclass(frozen=True)
class ThreadChoice:
    """How many torch threads this process uses, and why."""

    threads: int
    cores: int  # cores this process may run on
    workers: int  # live workers sharing them, this one included
    requested: int | None  # --threads N or $OMP_NUM_THREADS; None: the share

    def note(self) -> str:
        if self.requested is not None:
            return f"threads: {self.threads} torch thread(s), as asked"
        return (f"threads: {self.threads} torch thread(s): {self.cores} core(s) shared by {self.workers} archsearch "
                "worker(s) on this host (--threads N to choose)")


def registry_dir() -> Path:
    """``$ARCHSEARCH_WORKERS_DIR``, else ``$XDG_RUNTIME_DIR/archsearch-workers``, else
    ``~/.cache/archsearch/workers``: per user, like the processes it counts."""
    chosen = os.environ.get(REGISTRY_ENV)
    if not chosen:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        chosen = Path(runtime) / "archsearch-workers" if runtime else Path.home() / ".cache" / "archsearch" / "workers"
    return Path(chosen)


def cores_available() -> set[int]:
    """The CPUs this process may run on (its affinity mask, e.g. under ``taskset``)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def parse_threads(value: str | None) -> int | None:
    """``--threads``: ``auto`` (or nothing) -> None, else a positive whole number; ``ValueError`` otherwise."""
    if value is None or value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{value!r} is not a positive whole number or 'auto'")
    return int(value)


def _environment_request() -> int | None:
    try:
        return parse_threads(os.environ.get("OMP_NUM_THREADS") or None)
    except ValueError:
        return None


# ---- the registry ----------------------------------------------------------------------------------------
_registration: tuple[int, int | None] | None = None  # (fd holding this process's lock, requested threads)


def register(requested: int | None = None) -> None:
    """Join the registry (once per process; the lock lives as long as the process)."""
    global _registration
    if _registration is not None:
        _registration = (_registration[0], requested)
        return
    folder = registry_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = folder / f".{name}.tmp"
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": os.getpid(), "cpus": sorted(cores_available())}).encode())
    os.rename(staging, folder / f"{name}{SUFFIX}")  # visible only once locked: never mistaken for a dead one
    _registration = (fd, requested)


def live_workers() -> list[set[int] | None]:
    """The CPU sets of the registered processes still alive (None where unreadable); files of dead ones go."""
    live: list[set[int] | None] = []
    for path in sorted(registry_dir().glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # removed by another reader meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: its process lives (this one's own file included)
                live.append(_cpus(fd))
                continue
            path.unlink(missing_ok=True)  # nobody holds it: its process has ended
        finally:
            os.close(fd)
    return live


def _cpus(fd: int) -> set[int] | None:
    try:
        return set(json.loads(os.pread(fd, 1 << 16, 0))["cpus"])
    except (ValueError, KeyError, TypeError):
        return None


def share(cpus: set[int], others: list[set[int] | None]) -> tuple[int, int]:
    """(threads, workers): ``cpus`` divided among the workers whose CPUs overlap them (unknown ones count)."""
    workers = sum(1 for c in others if c is None or c & cpus)
    workers = max(1, workers)
    return max(1, len(cpus) // workers), workers


# ---- choosing and applying -----------------------------------------------------------------------------------
def threads_for_this_worker(requested: int | None) -> ThreadChoice:
    """``requested`` (else ``$OMP_NUM_THREADS``) if given, else this process's share of its cores."""
    cpus = cores_available()
    requested = requested if requested is not None else _environment_request()
    others = live_workers()
    if _registration is None:
        others.append(cpus)  # not registered (yet): count this process too
    threads, workers = share(cpus, others)
    return ThreadChoice(requested or threads, len(cpus), workers, requested)


def join(requested: int | None) -> ThreadChoice:
    """Register this training process and set its torch threads; call once at start-up."""
    register(requested)
    return apply(threads_for_this_worker(requested))


def rebalance() -> ThreadChoice | None:
    """Re-apply the share (workers may have joined or left since); None where this process never joined."""
    if _registration is None:
        return None
    return apply(threads_for_this_worker(_registration[1]))


def apply(choice: ThreadChoice) -> ThreadChoice:
    # local: torch loads only in a trainer (light commands parse --threads with this module)
    import torch

    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice
