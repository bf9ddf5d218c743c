"""The evaluator that trains: a job's proxy training at its rung's profile, checkpointed, and its latency.

Kept apart from the loop (``loop``), which takes any evaluator (replays score from tables, tests from a
synthetic surface), so that planning and running a study never needs torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..latency.trial import measure_trial
from ..train import threads
from ..train.data import fingerprint
from ..train.loop import default_device, evaluate, result_context
from ..train.recipe import train_resolution
from .fidelity import Ladder
from .jobs import Job
from .study import result_key


class TrainingEvaluator:
    """Proxy training of a job at its rung's profile (``training.evaluate``); beats the heartbeat per epoch.

    With ``checkpoints`` (a folder of the study), every job checkpoints after each epoch into a folder keyed
    by everything that fixes its trajectory (network, trained side, schedule, seed, context): an interrupted
    job resumes, and a job whose rung continues the lower rung's schedule starts from the checkpoint its
    lower-rung job left there. A worker that cannot see that folder (another machine) retrains from scratch,
    to the same result on a CPU."""

    def __init__(self, ladder: Ladder, data: str | None, progress: bool = True, device: str | None = None,
                 latency: dict | None = None, measure_latency: bool = True, checkpoints: Path | None = None):
        self.ladder = ladder
        self.data = data
        self.progress = progress
        self.device = torch.device(device) if device else default_device()
        self._context = result_context(self.device, fingerprint(data))
        self.latency_settings, self.measure_latency = latency, measure_latency
        self._measured: dict[tuple, dict] = {}
        self.checkpoints = checkpoints
        self._discarded: set[tuple] = set()  # job keys whose checkpoint is gone: the loop offers them every pass

    def context(self) -> dict:
        return self._context

    def trained_resolution(self, job: Job) -> int:
        return train_resolution(job.config, self.ladder.rungs[job.rung].resolution_scale)

    def __call__(self, job: Job) -> dict:
        threads.rebalance()  # other workers may have started or ended on this host since the last job
        record = evaluate(job.config, self.ladder.rungs[job.rung], self.data, job.seed, progress=self.progress,
                          device=self.device, on_epoch=lambda _stats: threads.rebalance(),
                          checkpoint_dir=self.checkpoint_dir(job))
        return record.to_dict()

    def checkpoint_dir(self, job: Job) -> Path | None:
        """Where ``job`` checkpoints (shared with every job of the same network, schedule and seed), or None."""
        if self.checkpoints is None:
            return None
        schedule = self.ladder.rungs[job.rung].schedule()
        return self.checkpoints / result_key(job.config, self.trained_resolution(job), schedule, job.seed,
                                             self._context)

    def discard(self, jobs: list[Job]) -> None:
        """Delete the checkpoints of ``jobs`` (``jobs.Plan.disposable``) where this process can see them."""
        for job in jobs:
            if job.key in self._discarded:
                continue
            self._discarded.add(job.key)
            folder = self.checkpoint_dir(job)
            if folder is not None and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)

    def latency(self, job: Job) -> dict | None:
        if not self.measure_latency:
            return None
        return measure_trial(job.config, self.latency_settings, self._measured)
