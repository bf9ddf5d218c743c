"""The evaluator that trains: a job's proxy training at its rung's profile, checkpointed, and its latency.

Kept apart from the loop (``loop``), which takes any evaluator (replays score from tables, tests from a
synthetic surface), so that planning and running a study never needs torch.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

from ..latency.trial import measure_trial
from ..train import threads
from ..train.data import fingerprint, resolve_data_root
from ..train.loop import default_device, evaluate, refused_record, result_context
from ..train.memory import MemoryPlan, plan_micro_batches
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
    to the same result on a CPU.

    On a CPU each job first asks whether it fits in the memory there is (``memory.plan_micro_batches``): one
    that does not trains in micro-batches (said in one line; its checkpoints go to a folder of their own, as
    BatchNorm makes it another trajectory), and one that does not fit even in micro-batches of two images is a
    "failed" record that says so, never a process the OS kills.

    With ``weights`` (a folder of the study), every job at the top rung -- where the verdict is taken: the
    deciding rung's finalists and baselines -- keeps its trained network there (``train.weights``), named by
    its result key; the record says where (``"weights"``). A result found in the cache brings its weights
    along (``adopt``)."""

    def __init__(self, ladder: Ladder, data: str | None, progress: bool = True, device: str | None = None,
                 latency: dict | None = None, measure_latency: bool = True, checkpoints: Path | None = None,
                 weights: Path | None = None):
        self.ladder = ladder
        self.data = data
        self.progress = progress
        self.device = torch.device(device) if device else default_device()
        self._context = result_context(self.device, fingerprint(data))
        self.latency_settings, self.measure_latency = latency, measure_latency
        self._measured: dict[tuple, dict] = {}
        self.checkpoints, self.weights = checkpoints, weights
        self._discarded: set[tuple] = set()  # job keys whose checkpoint is gone: the loop offers them every pass
        self._plans: dict[tuple, MemoryPlan] = {}  # job key -> its memory plan, until the job is trained

    def context(self) -> dict:
        return self._context

    def trained_resolution(self, job: Job) -> int:
        return train_resolution(job.config, self.ladder.rungs[job.rung].resolution_scale)

    def __call__(self, job: Job) -> dict:
        threads.rebalance()  # other workers may have started or ended on this host since the last job
        plan = self._plan(job)
        self._plans.pop(job.key, None)  # planned afresh if the job is ever trained again
        profile = self.ladder.rungs[job.rung]
        if plan is not None and not plan.fits:
            print(f"archsearch: {plan.note()} (rung {job.rung}, seed {job.seed}: the job fails)", file=sys.stderr)
            return refused_record(job.config, profile, job.seed, self.device, plan.note(),
                                  str(resolve_data_root(self.data))).to_dict()
        micro_batches = plan.micro_batches if plan is not None else 1
        if micro_batches > 1:
            print(f"{plan.note()} (rung {job.rung}, seed {job.seed})", file=sys.stderr)
        keep = self.weights_file(job, micro_batches)
        record = evaluate(job.config, profile, self.data, job.seed, progress=self.progress,
                          device=self.device, on_epoch=lambda _stats: threads.rebalance(),
                          checkpoint_dir=self.checkpoint_dir(job, micro_batches), micro_batches=micro_batches,
                          weights=keep).to_dict()
        if keep is not None and record["status"] == "ok":
            record["weights"] = str(keep)
        return record

    def weights_file(self, job: Job, micro_batches: int = 1) -> Path | None:
        """Where ``job`` keeps its trained network: top-rung jobs only, and only with a weights folder."""
        if self.weights is None or job.rung != self.ladder.top:
            return None
        schedule = self.ladder.rungs[job.rung].to_dict()
        key = result_key(job.config, self.trained_resolution(job), schedule, job.seed, self._context)
        return self.weights / (f"{key}.pt" if micro_batches == 1 else f"{key}-m{micro_batches}.pt")

    def adopt(self, job: Job, record: dict) -> dict:
        """A cached top-rung result with its weights linked into this study's folder (they stay where they
        were trained too); without a file to link, the record says no weights."""
        if self.weights is None or job.rung != self.ladder.top or record.get("status") != "ok":
            return record
        found = Path(record["weights"]) if record.get("weights") else None
        if found is None or not found.is_file():
            return {k: v for k, v in record.items() if k != "weights"}
        target = self.weights / found.name
        if target.resolve() != found.resolve():
            self.weights.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(found, target)
            except OSError:  # another file system
                shutil.copyfile(found, target)
        return {**record, "weights": str(target)}

    def micro_batches(self, job: Job) -> int:
        """How many micro-batches ``job`` would train in on this machine now (1 off the CPU): part of what its
        result is, so of its cache key. Planned afresh, and kept for the job's training, so the two agree."""
        self._plans.pop(job.key, None)
        plan = self._plan(job)
        return plan.micro_batches if plan is not None else 1

    def _plan(self, job: Job) -> MemoryPlan | None:
        """The job's plan: the one ``micro_batches`` just made, else a fresh one."""
        if self.device.type != "cpu":
            return None  # the estimate prices CPU training; a GPU's out-of-memory is a failed record already
        if job.key not in self._plans:
            self._plans[job.key] = plan_micro_batches(job.config, self.ladder.rungs[job.rung], data=self.data)
        return self._plans[job.key]

    def checkpoint_dir(self, job: Job, micro_batches: int = 1) -> Path | None:
        """Where ``job`` checkpoints (shared with every job of the same network, schedule, seed and
        micro-batches), or None."""
        if self.checkpoints is None:
            return None
        schedule = self.ladder.rungs[job.rung].schedule()
        key = result_key(job.config, self.trained_resolution(job), schedule, job.seed, self._context)
        return self.checkpoints / (key if micro_batches == 1 else f"{key}-m{micro_batches}")

    def discard(self, jobs: list[Job]) -> None:
        """Delete the checkpoints of ``jobs`` (``jobs.Plan.disposable``) where this process can see them."""
        for job in jobs:
            if job.key in self._discarded:
                continue
            self._discarded.add(job.key)
            folder = self.checkpoint_dir(job)
            if folder is None:
                continue
            for found in (folder, *folder.parent.glob(f"{folder.name}-m*")):  # split runs' folders too
                if found.exists():
                    shutil.rmtree(found, ignore_errors=True)

    def latency(self, job: Job) -> dict | None:
        if not self.measure_latency:
            return None
        return measure_trial(job.config, self.latency_settings, self._measured)
