"""Heartbeats on every storage: a running trial that stops beating is failed and its job queued again.

A worker's trial carries a counter (user attribute ``beat``) that a daemon thread bumps every
``heartbeat_interval()`` seconds, from the moment the trial exists -- before the strategy's proposal is drawn,
so a worker killed inside a slow GP fit leaves a trial that stops beating too. Every worker watches the
others' running trials between its own jobs: one whose counter has not moved for ``GRACE_BEATS`` intervals of
the watcher's own clock is stale (no clock is compared across machines). The first watcher to fail it (a
trial can be finished only once, so exactly one succeeds) queues its job again, with the job's attributes,
for any worker to take. A fresh trial killed before it drew a config had nothing to redo: it is only failed.

A beat that fails (the database is briefly unreachable) is retried at the next interval, never raised; if
the beats stop for longer than the grace period, other workers take the job over and the late result of the
original worker is kept in the result cache instead of being told (``loop``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from .jobs import Job
from .settings import StudyError

GRACE_BEATS = 3
BEAT_ATTR = "beat"


def heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats ($ARCHSEARCH_HEARTBEAT_S, default 30)."""
    value = os.environ.get("ARCHSEARCH_HEARTBEAT_S", "30")
    if not value.isdigit() or int(value) < 1:
        raise StudyError(f"ARCHSEARCH_HEARTBEAT_S: {value!r} is not a positive whole number of seconds")
    return int(value)


class Heartbeat:
    """Beats for one trial while the ``with`` block runs (none for in-memory studies, which one process owns)."""

    def __init__(self, trial: optuna.Trial, interval: float | None):
        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0
        self.failures = 0

    def beat(self) -> None:
        try:
            self.beats += 1
            self.trial.set_user_attr(BEAT_ATTR, self.beats)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._stop.set()  # taken over by another worker: nothing left to beat for
        except Exception as err:  # noqa: BLE001 -- a lost beat must never kill the training
            self.failures += 1
            if self.failures == 1:
                print(f"warning: heartbeat of trial {self.trial.number} failed ({type(err).__name__}); retrying",
                      file=sys.stderr)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.beat()
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.trial.number}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class StaleWatcher:
    """Remembers each running trial's last counter and when (on this machine's clock) it last changed."""

    def __init__(self, grace_s: float, clock: Callable[[], float] = time.monotonic):
        self.grace_s, self.clock = grace_s, clock
        self._seen: dict[int, tuple[int, float]] = {}

    def stale(self, trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
        now = self.clock()
        running = {t.number: t for t in trials if t.state == TrialState.RUNNING}
        self._seen = {n: v for n, v in self._seen.items() if n in running}
        out = []
        for number, t in running.items():
            beat = int(t.user_attrs.get(BEAT_ATTR, 0))
            seen = self._seen.get(number)
            if seen is None or seen[0] != beat:
                self._seen[number] = (beat, now)
            elif now - seen[1] > self.grace_s:
                out.append(t)
        return out


def finished_error(err: Exception) -> bool:
    """Whether ``err`` says the trial was already finished (by another worker): Optuna raises either."""
    return isinstance(err, optuna.exceptions.UpdateFinishedTrialError) or (
        isinstance(err, ValueError) and str(err).startswith("Cannot tell a"))


def requeue(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Fail an unfinished trial and queue its job again; False if someone else finished it first.

    Rung-0 proposals keep their Optuna parameters (the strategy learns from them); every job keeps its
    attributes, so the worker that takes it trains exactly the same network, rung and seed.
    """
    try:
        study.tell(trial.number, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as err:
        if not finished_error(err):
            raise
        return False
    job = Job.from_attrs(trial.user_attrs)
    if job is not None:
        study.enqueue_trial(dict(trial.params), user_attrs={**job.attrs(), "retry_of": trial.number})
    return True
