"""What a study knows when a sampler is asked for a trial, read from its jobs (``search.jobs.Ledger``)."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from ...model.config import ArchConfig
from ..fidelity import Ladder
from ..jobs import Ledger, study_noise
from ..noise import PRIOR_DATA


def other_jobs(study: optuna.Study, trial: FrozenTrial) -> Ledger:
    """Every job of the study but the one being sampled. The study lives in shared storage, so every worker
    sees every other worker's jobs."""
    return Ledger(t for t in study.get_trials(deepcopy=False) if t.number != trial.number)


def observations(ledger: Ledger, ladder: Ladder, data: str = PRIOR_DATA) -> tuple[list[tuple[ArchConfig, float, int]], list[ArchConfig],
                                                           list[ArchConfig], list[float]]:
    """(finished jobs as (config, accuracy, rung), running and queued configs, failed configs, each rung's
    noise std: the measured prior updated by the study's seed repeats)."""
    observed = [(e.job.config, e.accuracy, e.job.rung) for e in ledger.entries if e.state == "done"]
    pending = [e.job.config for e in ledger.busy()]
    failed = [e.job.config for e in ledger.entries if e.state == "failed"]
    return observed, pending, failed, [n.std for n in study_noise(ledger, ladder, data)]
