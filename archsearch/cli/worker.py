"""``archsearch worker``: join a study from any machine; the study itself says what to search."""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys

from ..search import recover_interrupted
from ..search.evaluator import TrainingEvaluator
from ..search.session import Session
from ..search.settings import StudySettings
from ..search.study import (
    ResultCache,
    default_storage,
    exclusive_run,
    is_sqlite,
    make_storage,
    open_study,
    quiet_optuna,
    redact,
    study_dir,
)
from ..train.data import resolve_data_root
from .common import (
    CLIError,
    add_quiet_option,
    add_storage_option,
    add_study_option,
    add_threads_option,
    add_trial_latency_option,
    join_threads,
    sigterm_as_interrupt,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "worker",
        help="train trials of an existing study (start any number, on any machines)",
        description="Join a study created by 'archsearch run': its space, budgets, ladder, data and strategy "
        "are read from the study. Workers share trials through the storage; a worker that dies mid-trial is "
        "detected by heartbeat and its trial is queued again for another worker.",
    )
    add_study_option(parser)
    add_storage_option(parser)
    parser.add_argument("--trials", type=int,
                        help="stop after training this many trials (default: until the study has all it asked for)")
    parser.add_argument("--data", help="dataset root on this machine, if not where the study says")
    add_threads_option(parser)
    add_trial_latency_option(parser)
    add_quiet_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    if args.trials is not None and args.trials < 1:
        raise CLIError(f"--trials: {args.trials} is not a positive number")
    print(join_threads(args).note())
    storage_url = args.storage or default_storage()
    storage = make_storage(storage_url)
    settings = StudySettings.from_study(open_study(args.study, storage, None))
    session = Session(settings, args.study, storage, sampler_seed=worker_seed(settings.seed, WORKER_ID))
    data = str(resolve_data_root(args.data or settings.data))
    print(f"worker {WORKER_ID} on study {args.study} in {redact(storage_url)}: {settings.strategy}, budget "
          f"{settings.budgets_label}, rungs {settings.ladder_name}, {settings.trials} proposals in all")
    with sigterm_as_interrupt(), exclusive_run(args.study, storage_url):
        if is_sqlite(storage_url) and (recovered := recover_interrupted(session.study)):
            print(f"{recovered} job(s) interrupted by an earlier run: queued again")
        evaluator = TrainingEvaluator(session.plan.ladder, data, progress=not args.quiet, latency=settings.latency,
                                      measure_latency=args.trial_latency or settings.latency_limit() is not None,
                                      checkpoints=study_dir(args.study) / "checkpoints",
                                      weights=study_dir(args.study) / "weights")
        try:
            progress = session.run(evaluator, ResultCache(), progress=not args.quiet, max_trials=args.trials)
        except KeyboardInterrupt:
            print("\ninterrupted: the job in hand is queued again for any worker", file=sys.stderr)
            return 130
    print(f"study {args.study}: {progress.trained} jobs done, {progress.proposed}/{progress.target} proposals "
          "(the winner is decided by the summary of 'archsearch run')")
    return 0


WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def worker_seed(study_seed: int, worker: str) -> int:
    """Each worker its own random stream (the study's seed and the worker's identity), so that workers
    asking at once do not draw the same proposal; ``archsearch run`` itself keeps the study's seed."""
    digest = hashlib.sha256(f"{study_seed}:{worker}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
