"""``archsearch worker``: join a study from any machine; the study itself says what to search."""

from __future__ import annotations

import argparse
import sys

from ..samplers import make_sampler
from ..search import TrainingEvaluator, feasible_grid, recover_interrupted, run_trials
from ..study import (
    ResultCache,
    StudySettings,
    default_storage,
    exclusive_run,
    is_sqlite,
    make_storage,
    open_study,
    redact,
)
from .common import CLIError, add_threads_option, join_threads, quiet_optuna, sigterm_as_interrupt


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
    feasible = feasible_grid(space, settings.mac_budget)
    sampler = make_sampler(settings.strategy, space, feasible.configs, feasible.macs, settings.mac_budget,
                           settings.seed)
    study = open_study(args.study, storage, None, sampler)
    from ..data import resolve_data_root

    data = str(resolve_data_root(args.data or settings.data))
    print(f"worker on study {args.study} in {redact(storage_url)}: {settings.strategy}, budget "
          f"{settings.mac_budget / 1e6:g}M, profile {settings.profile}, {settings.trials} trials in all")
    with sigterm_as_interrupt(), exclusive_run(args.study, storage_url):
        if is_sqlite(storage_url) and (recovered := recover_interrupted(study)):
            print(f"{recovered} trial(s) interrupted by an earlier run: queued again")
        evaluator = TrainingEvaluator(settings.profile, data, settings.seed, progress=not args.quiet)
        try:
            progress = run_trials(study, settings, evaluator, ResultCache(), progress=not args.quiet,
                                  max_trials=args.trials)
        except KeyboardInterrupt:
            print("\ninterrupted: the trial in hand is queued again for any worker", file=sys.stderr)
            return 130
    best = f"{100 * progress.best:.2f}%" if progress.best is not None else "-"
    print(f"study {args.study}: {progress.trained}/{progress.target} networks trained, best feasible {best}")
    return 0
