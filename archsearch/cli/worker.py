"""``archsearch worker``: join a study from any machine; the study itself says what to search."""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys

from ..search.samplers import make_sampler
from ..search import TrainingEvaluator, feasible_grid, recover_interrupted, run_trials
from ..search.study import (
    ResultCache,
    StudySettings,
    default_storage,
    exclusive_run,
    is_sqlite,
    make_storage,
    open_study,
    redact,
    study_dir,
)
from .common import CLIError, add_threads_option, add_trial_latency_option, join_threads, quiet_optuna, sigterm_as_interrupt


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "worker",
        help="train trials of an existing study (start any number, on any machines)",
        description="Join a study created by 'archsearch run': its space, budget, profile, data and strategy "
        "are read from the study. Workers share trials through the storage; a worker that dies mid-trial is "
        "detected by heartbeat and its trial is queued again for another worker.",
    )
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--storage", help=f"Optuna storage URL (default: {default_storage()}); use "
                                          "postgresql://USER:PASS@HOST/DB for several processes or machines")
    parser.add_argument("--trials", type=int,
                        help="stop after training this many trials (default: until the study has all it asked for)")
    parser.add_argument("--data", help="dataset root on this machine, if not where the study says")
    add_threads_option(parser)
    add_trial_latency_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    if args.trials is not None and args.trials < 1:
        raise CLIError(f"--trials: {args.trials} is not a positive number")
    print(join_threads(args).note())
    storage_url = args.storage or default_storage()
    storage = make_storage(storage_url)
    settings = StudySettings.from_study(open_study(args.study, storage, None))
    space = settings.factor_space()
    ladder = settings.fidelity_ladder()
    feasible = feasible_grid(space, settings.mac_budget, settings.latency_limit())
    sampler = make_sampler(settings.strategy, space, feasible.configs, feasible.macs, settings.mac_budget, ladder,
                           worker_seed(settings.seed, WORKER_ID))
    study = open_study(args.study, storage, None, sampler)
    from ..train.data import resolve_data_root
    from ..report.summary import plan_for

    data = str(resolve_data_root(args.data or settings.data))
    print(f"worker {WORKER_ID} on study {args.study} in {redact(storage_url)}: {settings.strategy}, budget "
          f"{settings.mac_budget / 1e6:g}M, rungs {settings.profile}, {settings.trials} proposals in all")
    with sigterm_as_interrupt(), exclusive_run(args.study, storage_url):
        if is_sqlite(storage_url) and (recovered := recover_interrupted(study)):
            print(f"{recovered} job(s) interrupted by an earlier run: queued again")
        evaluator = TrainingEvaluator(ladder, data, progress=not args.quiet, latency=settings.latency,
                                      measure_latency=args.trial_latency or settings.latency_limit() is not None,
                                      checkpoints=study_dir(args.study) / "checkpoints")
        try:
            progress = run_trials(study, settings, plan_for(settings), evaluator, ResultCache(),
                                  progress=not args.quiet, max_trials=args.trials)
        except KeyboardInterrupt:
            print("\ninterrupted: the job in hand is queued again for any worker", file=sys.stderr)
            return 130
    best = f"{100 * progress.best:.2f}%" if progress.best is not None else "-"
    print(f"study {args.study}: {progress.trained} jobs done, {progress.proposed}/{progress.target} proposals; "
          f"best top-rung score {best}")
    return 0


WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def worker_seed(study_seed: int, worker: str) -> int:
    """Each worker its own random stream (the study's seed and the worker's identity), so that workers
    asking at once do not draw the same proposal; ``archsearch run`` itself keeps the study's seed."""
    digest = hashlib.sha256(f"{study_seed}:{worker}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
