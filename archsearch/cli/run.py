"""``archsearch run --mac-budget 300M``: search for the most accurate MobileViT within a MAC budget."""

from __future__ import annotations

import argparse
import sys

from ..search import (
    TrainingEvaluator,
    enqueue_baseline,
    feasible_grid,
    parse_macs,
    recover_interrupted,
    run_trials,
    uniform_baseline,
)
from ..space import DEFAULT_SPACES, FactorSpace, read_space_toml
from ..study import (
    STRATEGIES,
    ResultCache,
    StudySettings,
    default_storage,
    default_study_name,
    exclusive_run,
    is_sqlite,
    make_storage,
    open_study,
    redact,
)
from ..dashboard import write_dashboard
from ..summary import render, summarize, write_summary
from .common import CLIError, add_threads_option, join_threads, quiet_optuna, sigterm_as_interrupt

PROFILES = ("tiny", "smoke", "proxy", "full")
# Trials that fit the default profile on the machine at hand: ~1 minute each for smoke on a 2-core CPU.
DEFAULT_TRIALS = {"tiny": 4, "smoke": 8, "proxy": 40, "full": 10}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="search for the most accurate MobileViT within a MAC budget",
        description="GP-guided (or NSGA-III/TPE/random) search over resolution, width, MV2 depth and ViT depth. "
        "Only configs within the budget are trained (closed-form cost model); the uniform width-multiplier "
        "baseline is trained in the same study. Re-running the same command resumes the study; Ctrl-C stops "
        "cleanly and keeps every finished trial.",
    )
    parser.add_argument("--mac-budget", required=True,
                        help="MAC budget per image at batch 1: 300M, 0.3G, 1.2GMACs or 300000000")
    parser.add_argument("--space", help="factor-space TOML file (default: the v2 space shipped in the package, "
                        "archsearch/spaces/mobilevit_v2.toml)")
    parser.add_argument("--study", help="study name (default: derived from space, budget, strategy, profile, seed and "
                        "dataset, e.g. v2-300M-gp-smoke-s0-imagenette2-224-1a2b3c)")
    parser.add_argument("--storage", help=f"Optuna storage URL (default: {default_storage()}); "
                                          "postgresql://USER:PASS@HOST/DB for many machines")
    parser.add_argument("--trials", type=int, help="distinct architectures to train besides the baseline "
                        f"(default by profile: {', '.join(f'{k} {v}' for k, v in DEFAULT_TRIALS.items())})")
    parser.add_argument("--profile", choices=PROFILES,
                        help="proxy-training fidelity (default: proxy on a GPU, smoke on a CPU)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="gp",
                        help="gp (default): GP with expected improvement; nsga3: accuracy/MACs Pareto front; "
                        "tpe, random: Optuna's, as baselines")
    parser.add_argument("--data", help="ImageFolder dataset root (default: $ARCHSEARCH_DATA, else Imagenette "
                                       "in ../shared/datasets)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the strategy and of every training (default 0)")
    add_threads_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                        help="do not write the HTML dashboard at the end (default: dashboards/STUDY.html)")
    parser.set_defaults(handler=run)


def default_profile() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "proxy", f"GPU {torch.cuda.get_device_name(0)}"
    return "smoke", "no GPU found"


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    budget = parse_macs(args.mac_budget)
    space_path = args.space or DEFAULT_SPACES["v2"]
    space_toml = read_space_toml(space_path)
    space = FactorSpace.from_dict(space_toml, source=str(space_path))
    profile, why = (args.profile, "as asked") if args.profile else default_profile()
    trials = args.trials if args.trials is not None else DEFAULT_TRIALS[profile]
    if trials < 1:
        raise CLIError(f"--trials: {trials} is not a positive number")
    print(join_threads(args).note())
    from ..data import resolve_data_root

    data = str(resolve_data_root(args.data))
    feasible = feasible_grid(space, budget)
    if budget >= feasible.dearest[1]:
        print(f"warning: the budget is above the most expensive config of the space ({feasible.dearest[0].id}, "
              f"{feasible.dearest[1] / 1e6:.1f}M MACs): every config fits", file=sys.stderr)
    settings = StudySettings(space=space_toml, mac_budget=budget, profile=profile,
                             data=data, strategy=args.strategy, seed=args.seed, trials=trials)
    name = args.study or default_study_name(space.family, budget, args.strategy, profile, args.seed, data)
    storage_url = args.storage or default_storage()
    baseline = uniform_baseline(space, budget)
    print(f"study {name} in {redact(storage_url)}")
    print(f"profile {profile} ({why}), {trials} trials + the baseline, strategy {args.strategy}, "
          f"{len(feasible.configs)} distinct feasible networks of {len(space)} grid points")
    with sigterm_as_interrupt(), exclusive_run(name, storage_url):
        from ..samplers import make_sampler

        storage = make_storage(storage_url)
        sampler = make_sampler(args.strategy, space, feasible.configs, feasible.macs, budget, args.seed)
        study = open_study(name, storage, settings, sampler)
        if study.user_attrs["settings"]["trials"] != trials:
            study.set_user_attr("settings", {**study.user_attrs["settings"], "trials": trials})
        if is_sqlite(storage_url) and (recovered := recover_interrupted(study)):
            print(f"{recovered} trial(s) interrupted by an earlier run: queued again")
        enqueue_baseline(study, baseline, space)
        evaluator = TrainingEvaluator(profile, data, args.seed, progress=not args.quiet)
        interrupted = False
        try:
            run_trials(study, settings, evaluator, ResultCache(), progress=not args.quiet)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: finished trials are kept, the interrupted one is queued again; "
                  "re-run the same command to resume", file=sys.stderr)
        summary = summarize(study, storage_url)
        summary_path, winner_path = write_summary(summary)
        dashboard_path = write_dashboard(study, storage_url) if args.dashboard else None
    print()
    print(render(summary))
    print(f"\nsummary:   {summary_path}" + (f"\nwinner:    {winner_path}" if winner_path else "")
          + (f"\ndashboard: {dashboard_path}" if dashboard_path else ""))
    return 130 if interrupted else 0
