"""``archsearch run --mac-budget 300M``: search for the most accurate MobileViT within a MAC budget."""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from ..latency import (
    DEFAULT_BACKEND,
    LatencyLimit,
    LatencySettings,
    check_backend,
    find_model,
    format_seconds,
    load_model,
    parse_latency,
)
from ..model.space import DEFAULT_SPACES, FactorSpace, read_space_toml
from ..quant.study import quantize_deciding
from ..report.dashboard import write_dashboard
from ..report.summary import render, summarize, write_summary
from ..results.formula import MIN_LEVELS
from ..results.holdout import check_lines
from ..results.judge import study_facts
from ..results.quantized import SETTINGS_ATTR, QuantizeSettings, settings_of
from ..search import BudgetError, feasible_grid, parse_budgets, recover_interrupted
from ..search.evaluator import TrainingEvaluator
from ..search.fidelity import (
    DEFAULT_FINALISTS,
    DEFAULT_LADDERS,
    DEFAULT_PROMOTE,
    DEFAULT_REPEATS,
    DEFAULT_TIME_BUDGET,
    DEFAULT_TOP_SEEDS,
    check_ladder,
    ladder,
    parse_rungs,
)
from ..search.planner import (
    CostModel,
    DataSize,
    TimePlanner,
    expected_width_line,
    parse_duration,
    time_clock,
    typical_networks,
)
from ..search.session import Session, plan_for
from ..search.settings import StudySettings
from ..search.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    get_strategy,
    strategies_help,
)
from ..search.study import (
    ResultCache,
    default_storage,
    default_study_name,
    exclusive_run,
    is_sqlite,
    quiet_optuna,
    redact,
    study_dir,
)
from ..train.data import resolve_data_root
from .common import (
    CLIError,
    add_data_option,
    add_quiet_option,
    add_space_option,
    add_storage_option,
    add_threads_option,
    add_trial_latency_option,
    join_threads,
    sigterm_as_interrupt,
)
from .formula import validate_budget

# Rung-0 proposals that fit each default on the machine at hand (about 15 minutes on a 2-core CPU).
DEFAULT_TRIALS = {"cpu": 8, "gpu": 40}
SINGLE_TRIALS = {"tiny": 4, "quick": 12, "smoke": 8, "short": 6, "reference": 4, "proxy-r0": 20, "proxy-r1": 16, "proxy": 40,
                 "full": 10}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="search for the most accurate MobileViT within a MAC budget",
        description="Search resolution, width, MV2 depth and ViT depth for the most accurate MobileViT within a "
        "MAC budget. Only configs within the budget are ever trained (closed-form cost model). The budget is "
        "spent in rungs of rising fidelity: many configs at the cheapest rung, the best fraction promoted, and "
        "the winner and three baselines (uniform width, width x resolution, compound scaling, each brought to "
        "the budget) decided at the top rung, with the winner's margin over each and a 95 % interval. "
        "Re-running the same command resumes; Ctrl-C stops cleanly and keeps every finished job.",
    )
    parser.add_argument("--mac-budget",
                        help="MAC budget per image at batch 1: 300M, 0.3G, 1.2GMACs or 300000000 (required unless "
                        "--latency-budget is given; without it, every config of the space fits by MACs). A list, "
                        "75M,150M,300M,600M, searches a family: one study, every network trained once and serving "
                        "every budget it fits, a verdict (winner, baselines, margins) at each budget, and the "
                        "scaling law across them"),
    add_space_option(parser)
    parser.add_argument("--study", help="study name (default: derived from space, budget, strategy, rungs, seed and "
                        "dataset, e.g. v2-300M-gp-smoke-e2-smoke-s0-imagenette2-224-1a2b3c)")
    add_storage_option(parser)
    fid = parser.add_argument_group("ladder (default: smoke-e2,smoke,decide on a CPU -- screen after 2 of "
                                    "smoke's 4 epochs, continue the promoted networks from their checkpoints, and "
                                    "decide at decide: 2 epochs on every training image, every validation image; "
                                    "proxy-r0,proxy-r1,proxy on a GPU)")
    fid.add_argument("--rungs", help="training profiles of the rungs, cheapest first, e.g. quick,smoke; NAME-eK "
                     "stops NAME after epoch K, and a next rung of the same schedule continues from its checkpoint")
    fid.add_argument("--profile", help="one profile only: a ladder of one rung (tiny, quick, smoke, short, proxy, ...)")
    fid.add_argument("--promote", type=float,
                     help="fraction of a rung's configs promoted to the next (default: 1/4 on a CPU, 1/3 on a GPU)")
    fid.add_argument("--finalists", type=int,
                     help="make the top rung a deciding rung: this many best screened networks by the GP's posterior "
                     "and the three baselines are trained there afresh and compared on the same validation images "
                     f"(default: {DEFAULT_FINALISTS['cpu']} with the default CPU ladder; 0: decide at the top rung "
                     "as promoted)")
    fid.add_argument("--repeats", type=int,
                     help="finalists trained at one seed more, so that the study measures its own noise at the "
                     f"deciding rung (default {DEFAULT_REPEATS} with a deciding rung)")
    fid.add_argument("--time-budget", metavar="DURATION",
                     help="plan the run to finish within DURATION (45m, 2h, 1h30m; like AutoGluon's time_limit): the "
                     "deciding rung is reserved first, the rest screens as many proposals as fit, and the plan is "
                     "re-made as jobs finish, from their measured times. Too short for a verdict: screens only, and "
                     f"says so (default: {DEFAULT_TIME_BUDGET['cpu']} with the default CPU ladder and no --trials)")
    fid.add_argument("--top-seeds", type=int,
                     help="seeds of every top-rung job, for the winner's and the baselines' noise (default: 1 on a "
                     "CPU, 2 on a GPU)")
    lat = parser.add_argument_group("latency")
    lat.add_argument("--latency-budget", metavar="TIME",
                     help="inference latency (batch 1, one thread) the winner must meet, with its unit: 4ms, 250us, "
                     "0.004s. Alone or with --mac-budget: candidates and baselines are the configs the latency model "
                     "predicts within it; every trained config's latency is measured, and one measured over the "
                     "budget is flagged and never the winner. A list, 5ms,8ms,12ms, gives a family one latency "
                     "budget per member: with a --mac-budget list of as many budgets, paired tightest with "
                     "cheapest; alone, each member's MAC budget is that of the dearest config predicted within "
                     "its latency budget")
    lat.add_argument("--latency-backend", metavar="BACKEND",
                     help="where latency is measured and budgeted: ort-cpu (default; ONNX Runtime), torch-cpu, or "
                     "torch-cuda (bf16, needs a GPU)")
    lat.add_argument("--latency-model", metavar="FILE",
                     help="latency model of 'archsearch latency-table' (default: "
                     "benchmarks/latency_FAMILY_BACKEND_b1_t1_model.json under the current directory)")
    add_trial_latency_option(lat)
    quant = parser.add_argument_group("quantization")
    quant.add_argument("--quantize", choices=("int8", "6"),
                       help="after training, quantize every network of the deciding rung from its kept weights "
                       "(int8: a real int8 model on ONNX Runtime; 6: 6-bit, simulated) and report its accuracy, "
                       "drop and int8 latency beside the float ones; not counted in --time-budget")
    quant.add_argument("--quantize-method", choices=("minmax", "ort", "hybrid"), default="hybrid",
                       help="how (default hybrid, the Q-HyViT approach; see 'archsearch quantize --help')")
    quant.add_argument("--objective", choices=("float", "quantized"), default="float",
                       help="what the verdict is taken on: the float networks (default) or, with --quantize, the "
                       "quantized ones -- the accuracy a device will see")
    parser.add_argument("--trials", type=int, help="distinct architectures the strategy proposes at the first rung "
                        f"(default: {DEFAULT_TRIALS['cpu']} on a CPU, {DEFAULT_TRIALS['gpu']} on a GPU; with "
                        "--profile: " + ", ".join(f"{k} {v}" for k, v in SINGLE_TRIALS.items()) + ")")
    parser.add_argument("--strategy", choices=tuple(STRATEGIES), default=DEFAULT_STRATEGY, help=strategies_help())
    add_data_option(parser)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the strategy and of every training; repeats use the next seeds (default 0)")
    add_threads_option(parser)
    add_quiet_option(parser)
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                        help="do not write the HTML dashboard at the end (default: dashboards/STUDY.html)")
    parser.set_defaults(handler=run)


def device_kind() -> tuple[str, str]:
    if torch.cuda.is_available():
        return "gpu", f"GPU {torch.cuda.get_device_name(0)}"
    return "cpu", "no GPU found"


def choose_ladder(args: argparse.Namespace):
    """The fidelity ladder the options ask for, the default trial count for it, the default time budget (or
    None), and why."""
    kind, why = device_kind()
    if args.profile and args.rungs:
        raise CLIError("--profile and --rungs: give one (--profile NAME is --rungs NAME)")
    top_seeds = args.top_seeds if args.top_seeds is not None else DEFAULT_TOP_SEEDS[kind]
    promote = args.promote if args.promote is not None else DEFAULT_PROMOTE[kind]
    asked = bool(args.profile or args.rungs)
    names = parse_rungs(args.profile or args.rungs) if asked else DEFAULT_LADDERS[kind]
    finalists = args.finalists if args.finalists is not None else (0 if asked else DEFAULT_FINALISTS[kind])
    repeats = args.repeats if args.repeats is not None else (min(DEFAULT_REPEATS, finalists) if finalists else 0)
    lad = ladder(names, promote, top_seeds, finalists, repeats)
    if asked:
        trials = SINGLE_TRIALS.get(names[0], 8) if len(names) == 1 else DEFAULT_TRIALS[kind]
        return lad, trials, None, "as asked"
    return lad, DEFAULT_TRIALS[kind], DEFAULT_TIME_BUDGET[kind] if args.trials is None else None, why


def quantize_settings(args: argparse.Namespace) -> QuantizeSettings | None:
    if args.objective == "quantized" and not args.quantize:
        raise CLIError("--objective quantized: add --quantize int8 (or 6)")
    if not args.quantize:
        return None
    bits = 8 if args.quantize == "int8" else int(args.quantize)
    if args.quantize_method == "ort" and bits != 8:
        raise CLIError("--quantize-method ort: ONNX Runtime's quantizer writes int8 only")
    return QuantizeSettings(bits, args.quantize_method, args.objective)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    quantize = quantize_settings(args)
    if args.mac_budget is None and args.latency_budget is None:
        raise CLIError("--mac-budget: give a MAC budget, a --latency-budget, or both")
    budgets = parse_budgets(args.mac_budget) if args.mac_budget is not None else None
    space_path = args.space or DEFAULT_SPACES["v2"]
    space_toml = read_space_toml(space_path)
    space = FactorSpace.from_dict(space_toml, source=str(space_path))
    latency = latency_settings(args, space, budgets)
    limit = latency_limit(latency)
    if budgets is None and latency is not None and latency.budgets_s:
        budgets = latency_family_budgets(space, latency)
    budget = budgets[-1] if budgets else None
    lad, default_trials, default_time, why = choose_ladder(args)
    if default_time and budgets and len(budgets) > 1:  # each budget's verdict takes about a single run's time
        default_time = f"{parse_duration(default_time) * len(budgets) / 60:g}m"
    time_budget = args.time_budget or default_time
    budget_s = parse_duration(time_budget) if time_budget else None
    check_ladder(space, lad)
    if get_strategy(args.strategy).one_rung and lad.top > 0:
        raise CLIError(f"--strategy {args.strategy} searches one rung: add --profile NAME")
    trials = args.trials if args.trials is not None else default_trials
    if trials < 1:
        raise CLIError(f"--trials: {trials} is not a positive number")
    threads = join_threads(args)
    print(threads.note())
    data = str(resolve_data_root(args.data))
    feasible = feasible_grid(space, budget if budget is not None else sys.maxsize, limit)
    if budget is None:
        budget = feasible.dearest[1]  # a latency budget alone: every config fits by MACs
        budgets = (budget,)
    elif not any(m <= budgets[0] for m in feasible.macs):
        raise BudgetError(f"--mac-budget: {budgets[0] / 1e6:g}M is below every config of the space within the "
                          f"other limits (the cheapest: {feasible.cheapest[0].id} at {feasible.cheapest[1] / 1e6:.1f}M "
                          "MACs)")
    elif latency is not None and latency.budgets_s:  # each member within both of its budgets, or one line
        for member_budget, member_limit in zip(budgets, latency.limits(len(budgets))):
            feasible_grid(space, member_budget, member_limit)
    elif budget >= feasible.dearest[1]:
        print(f"warning: the budget is above the most expensive config of the space ({feasible.dearest[0].id}, "
              f"{feasible.dearest[1] / 1e6:.1f}M MACs): every config fits", file=sys.stderr)
    settings = StudySettings(space=space_toml, mac_budget=budget, ladder=lad.to_dict(),
                             data=data, strategy=args.strategy, seed=args.seed, trials=trials, latency=latency,
                             mac_budgets=budgets if len(budgets) > 1 else None)
    planner = None
    if budget_s is not None:
        typical = typical_networks(feasible.configs, feasible.macs, budgets)
        planner = TimePlanner(budget_s, plan_for(settings), typical, DataSize.scan(data), time_clock(),
                              CostModel.prior(torch.get_num_threads()))
        first = planner.first
        lad, trials = first.ladder, first.trials
        settings = dataclasses.replace(settings, ladder=lad.to_dict(), trials=trials)
        print(f"time budget {time_budget}: {first.words}; expected {first.screen_s / 60:.0f} min screening + "
              f"{first.decide_s / 60:.0f} min deciding (cost model: {planner.cost.source}); re-planned as jobs finish"
              + ("" if lad.deciding else " -- too short for a verdict: this run only screens"))
    name = args.study or default_study_name(space.family, budgets, args.strategy, lad.name.replace(">", "-"),
                                            args.seed, data, latency_tag(latency))
    storage_url = args.storage or default_storage()
    session = Session(settings, name, storage_url, candidates=(feasible.configs, feasible.macs))
    if lad.deciding:
        print(expected_width_line(lad, DataSize.scan(data), data))
    print(f"study {name} in {redact(storage_url)}")
    print(f"rungs {lad.name} ({why}), {trials} proposals at {lad.rungs[0].name}, promote {lad.promote:.2g}, "
          f"{lad.top_seeds} seed(s) at the top; strategy {args.strategy}; {len(feasible.configs)} distinct feasible "
          f"networks of {len(space)} grid points")
    if limit is not None:
        print(f"latency budget {limit.describe()}: {len(feasible.configs)} networks predicted within both budgets")
    for line in baseline_lines(session.plan):
        print(line)
    with sigterm_as_interrupt(), exclusive_run(name, storage_url):
        study = session.study  # created or resumed under the lock
        if is_sqlite(storage_url) and (recovered := recover_interrupted(study)):
            print(f"{recovered} job(s) interrupted by an earlier run: queued again")
        evaluator = TrainingEvaluator(lad, data, progress=not args.quiet, latency=latency,
                                      measure_latency=args.trial_latency or limit is not None,
                                      checkpoints=study_dir(name) / "checkpoints", weights=study_dir(name) / "weights")
        interrupted = False
        try:
            result = session.run(evaluator, ResultCache(), progress=not args.quiet,
                                 replan=planner.replan if planner else None)
            print(f"{result.trained} jobs done; {result.cached} of this run's came from the result cache")
            if lad.deciding and len(budgets) > MIN_LEVELS:
                check_held_out(study, storage_url, session, budgets[(len(budgets) - 1) // 2], evaluator, planner,
                               progress=not args.quiet)
            if quantize is None and (kept := settings_of(study)) and kept.objective != "float":
                study.set_user_attr(SETTINGS_ATTR, {**dataclasses.asdict(kept), "objective": "float"})
            if quantize is not None:
                print(f"quantizing the deciding rung's networks ({quantize.label}) ...")
                done = quantize_deciding(study, lad.top, quantize, data, study_dir(name) / "quantized",
                                         progress=not args.quiet)
                print(f"{done} network(s) quantized")
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: finished jobs are kept, the interrupted one is queued again; "
                  "re-run the same command to resume", file=sys.stderr)
        except BudgetError as err:
            raise CLIError(str(err)) from None
        facts = study_facts(study, storage_url, session.plan)
        summary = summarize(study, storage_url, facts)
        summary_path, winner_path = write_summary(summary)
        dashboard_path = write_dashboard(study, storage_url, facts=facts, summary=summary) if args.dashboard else None
    print()
    print(render(summary))
    print(f"\nsummary:   {summary_path}" + (f"\nwinner:    {winner_path}" if winner_path else "")
          + (f"\ndashboard: {dashboard_path}" if dashboard_path else ""))
    return 130 if interrupted else 0


def check_held_out(study, storage_url: str, session: Session, budget: int, evaluator: TrainingEvaluator,
                   planner: TimePlanner | None, progress: bool) -> None:
    """The law checked at a middle budget it was not fitted on (``formula --validate``), where time is left."""
    facts = study_facts(study, storage_url, session.plan)
    print(f"checking the law at {budget / 1e6:g}M, fitted without it ...")
    try:
        check = validate_budget(study, storage_url, facts, budget, evaluator, progress,
                                fits=planner.fits if planner else None)
    except CLIError as err:
        print(f"no held-out check: {err}")
        return
    print("\n".join(check_lines(check.to_dict())))


def latency_settings(args: argparse.Namespace, space: FactorSpace,
                     budgets: tuple[int, ...] | None) -> LatencySettings | None:
    """``StudySettings.latency`` from the options: None (no latency options: trials timed on the defaults), a
    backend without a budget, or a budget with the latency model that predicts it (a family's: one per MAC
    budget, ``budgets``, or the MAC budgets to come from them where there are none)."""
    if args.latency_budget is None and args.latency_backend is None and args.latency_model is None:
        return None
    backend = args.latency_backend or DEFAULT_BACKEND
    check_backend(backend, "--latency-backend")
    if args.latency_budget is None:
        if args.latency_model:
            raise CLIError("--latency-model: it predicts a latency budget; give --latency-budget too")
        return LatencySettings(backend=backend)
    budgets_s = parse_latencies(args.latency_budget)
    if len(budgets_s) > 1 and budgets is not None and len(budgets) != len(budgets_s):
        raise CLIError(f"--latency-budget: {len(budgets_s)} budgets for {len(budgets)} MAC budget(s); give one "
                       "latency budget, one per MAC budget, or a list without --mac-budget")
    model = load_model(args.latency_model) if args.latency_model else find_model(space.family, backend)
    if args.latency_backend and model.backend != args.latency_backend:
        raise CLIError(f"--latency-model: {args.latency_model} was measured on {model.backend}, not "
                       f"{args.latency_backend}")
    if model.batch != 1:
        raise CLIError(f"--latency-model: a budget is per image at batch 1; this model is of batch {model.batch}")
    settings = LatencyLimit(budgets_s[-1], model).to_settings()
    return dataclasses.replace(settings, budgets_s=budgets_s) if len(budgets_s) > 1 else settings


def parse_latencies(text: str) -> tuple[float, ...]:
    """'5ms,8ms' -> every latency budget in seconds, tightest first; a repeated or empty entry is an error."""
    parts = str(text).split(",")
    if any(not p.strip() for p in parts):
        raise CLIError(f"--latency-budget: {text!r} has an empty entry; write e.g. 5ms,8ms,12ms")
    budgets = [parse_latency(p.strip()) for p in parts]
    if len(set(budgets)) < len(budgets):
        raise CLIError(f"--latency-budget: {text!r} gives a budget twice; each budget once")
    return tuple(sorted(budgets))


def latency_family_budgets(space: FactorSpace, latency: LatencySettings) -> tuple[int, ...]:
    """A family given by latency budgets alone: each member's MAC budget is the dearest config predicted within
    its latency budget (two latency budgets that admit the same networks are one member: an error)."""
    limits = latency.limits(len(latency.budgets_s))
    budgets = tuple(max(feasible_grid(space, sys.maxsize, limit).macs) for limit in limits)
    if len(set(budgets)) < len(budgets):
        raise CLIError("--latency-budget: two budgets admit the same dearest network "
                       f"({', '.join(f'{b / 1e6:.1f}M' for b in budgets)} MACs); give budgets further apart")
    return budgets


def latency_limit(latency: LatencySettings | None) -> LatencyLimit | None:
    return latency.limit() if latency is not None else None


def latency_tag(latency: LatencySettings | None) -> str | None:
    """The default study name's latency part (none without latency options)."""
    return latency.tag() if latency is not None else None


def baseline_lines(plan) -> list[str]:
    """Each budget's baselines (a family's prefixed with the budget)."""
    lines = []
    for member in plan.members:
        b = member.baselines
        at = (f" at {b.budget / 1e6:g}M" + (f" and {format_seconds(b.latency.budget_s)}" if b.latency else "")
              if len(plan.members) > 1 else "")
        for kind, found in (("width", b.width), ("compound", b.compound)):
            if found:
                lines.append(f"baseline {kind}{at}: {found.config.id} ({found.macs / 1e6:.1f}M, {100 * found.fill:.0f} "
                             f"% of the budget; {found.rule})")
        if b.width_resolution:
            lines.append(f"baseline width_resolution{at}: the best of {len(b.width_resolution)} candidates at rung 0 ("
                         + ", ".join(f"{c.config.id} {100 * c.fill:.0f} %" for c in b.width_resolution) + ")")
        lines += [f"baseline {kind}{at}: impossible -- {why}" for kind, why in b.impossible.items()]
    return lines
