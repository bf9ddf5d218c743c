"""``archsearch latency-table``: measure a space's latency (resumable) and fit the predictor every grid point
is priced with (issue 15)."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from tqdm import tqdm

from ..bench.table import select_configs
from ..latency.evaluate import (
    DEFAULT_FOLDS,
    DEFAULT_HOLDOUT,
    format_evaluation,
    select_model,
)
from ..latency.measure import MIN_CLI_RUNS, STATISTICS
from ..latency.predict import save_model
from ..latency.table import (
    default_table_path,
    load_latency_table,
    lut_path,
    measure_table,
    meta_path,
    model_path,
    space_range,
)
from ..model.space import DEFAULT_SPACES, FactorSpace
from ..search import BudgetError, parse_macs
from .common import CLIError, add_quiet_option, add_space_option, sigterm_as_interrupt
from .latency import add_timing_options, check_timing_options


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "latency-table",
        help="measure a space-filling sample of a space's latency and fit its latency predictor (resumable)",
        description="Time a deterministic space-filling sample of the space's distinct networks (greedy maximin in "
        "the factor cube, round-robin over bands of log-MACs, the whole MAC range unless narrowed), chunk by chunk "
        "and interleaved within a chunk, and every distinct block of the space's grid alone (the lookup table); "
        "append rows as each chunk finishes (re-running measures only what is missing). Then fit every predictor "
        "(block lookup table + overhead, feature regression, GP on the factors, and each with a GP correction), "
        "score them on held-out networks, keep the best and save it beside the table as TABLE_model.json: "
        "'archsearch run --latency-budget' prices every grid point with it. Example: taskset -c 0 archsearch "
        "latency-table --family v2 --backend ort-cpu --threads 1",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--family", choices=tuple(DEFAULT_SPACES), help="the default space of this family "
                       "(default v2)")
    add_space_option(where, family=None)
    parser.add_argument("--out", help="the CSV table (default: benchmarks/latency_FAMILY_BACKEND_bBATCH_tTHREADS.csv)")
    parser.add_argument("--configs", type=int, default=150, help="networks in the sample (default 150)")
    parser.add_argument("--min-macs", help="cheapest network to sample (default: the space's cheapest)")
    parser.add_argument("--max-macs", help="dearest network to sample (default: the space's dearest)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the sample's tie-breaking order")
    add_timing_options(parser, runs_default=MIN_CLI_RUNS)
    parser.add_argument("--passes", type=int, default=1,
                        help="measure every network this many times, a whole pass over the sample at a time; a "
                        "network's latency is the median of its passes, and two passes show how repeatable a "
                        "measurement is on this machine (default 1; re-run with 2 to add a pass)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="round-robin passes over a chunk's networks that share the timed runs (default 5)")
    parser.add_argument("--chunk", type=int, default=8, help="networks prepared and timed together (default 8; "
                        "blocks: 4x as many)")
    parser.add_argument("--no-lut", action="store_true", help="skip the block lookup table (and the predictors "
                        "that need it)")
    parser.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                        help=f"fraction of the networks held out to score the predictors (default {DEFAULT_HOLDOUT})")
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                        help=f"cross-validation folds on the rest, to choose the predictor (default {DEFAULT_FOLDS})")
    parser.add_argument("--statistic", choices=STATISTICS, default="wall",
                        help="what the predictor learns: the median wall time (default), or the median thread CPU "
                        "time of the same runs -- the wall time of a core the inference has to itself, the steadier "
                        "figure while other processes share the core (single-threaded CPU backends only)")
    parser.add_argument("--fit-only", action="store_true", help="measure nothing: fit and score the predictors on "
                        "the table as it is")
    parser.add_argument("--dry-run", action="store_true", help="list the sample and exit; measure nothing")
    add_quiet_option(parser)
    parser.set_defaults(handler=run)


def _macs(option: str, text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        return parse_macs(text)
    except BudgetError as err:
        raise CLIError(str(err).replace("--mac-budget", option, 1)) from None


def run(args: argparse.Namespace) -> int:
    check_timing_options(args)
    if args.runs < args.rounds or args.rounds < 1:
        raise CLIError(f"--rounds: {args.rounds} is not in 1..--runs ({args.runs})")
    for name in ("configs", "chunk", "passes"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name}: {getattr(args, name)} is not a positive integer")
    path = Path(args.space) if args.space else DEFAULT_SPACES[args.family or "v2"]
    space = FactorSpace.load(path)
    space_dict = tomllib.loads(path.read_text())
    out = Path(args.out) if args.out else default_table_path(space.family, args.backend, args.batch, args.threads)
    if not args.fit_only:
        cheapest, dearest = space_range(space)
        min_macs, max_macs = _macs("--min-macs", args.min_macs, cheapest), _macs("--max-macs", args.max_macs, dearest)
        if min_macs > max_macs:
            raise CLIError(f"--min-macs: {min_macs / 1e6:g}M is above --max-macs {max_macs / 1e6:g}M")
        sample = [c for c, _ in select_configs(space, args.configs, min_macs, max_macs, args.sample_seed)]
        if args.dry_run:
            for i, config in enumerate(sample, 1):
                print(f"{i:>4} {config.id}")
            return 0
        print(f"table {out} (settings in {meta_path(out)}, blocks in {lut_path(out)}): {len(sample)} {space.family} "
              f"networks in {min_macs / 1e6:g}M..{max_macs / 1e6:g}M MACs on {args.backend}, batch {args.batch}, "
              f"{args.threads} thread(s), {args.runs} runs in {args.rounds} rounds after {args.warmup} warm-up")
        with sigterm_as_interrupt():
            done = measure_table(out, space, space_dict, sample, args.backend, args.batch, args.threads, args.runs,
                                 args.warmup, args.rounds, min_macs, max_macs, args.sample_seed, args.chunk,
                                 not args.no_lut, args.passes, None if args.quiet else _bar)
        print(f"{done.networks_added} network measurements now ({done.networks} networks in the sample, "
              f"{args.passes} pass{'es' if args.passes > 1 else ''})"
              + (f"; {done.blocks_added} blocks now ({done.blocks} in the lookup table)" if done.lut else ""))
    table = load_latency_table(out, args.statistic, option="--out")
    model = select_model(table, holdout=args.holdout, folds=args.folds)
    saved = save_model(model, model_path(out))
    ev = model.evaluation
    print(f"\n{ev['networks']} measured networks ({args.statistic} time); {len(ev['held_out_ids'])} held out, "
          f"{ev['kept']} kept "
          f"({ev['folds']}-fold cross-validation on them chooses the predictor); absolute percentage errors:")
    print("\n".join(format_evaluation(ev)))
    held = ev["kinds"][ev["chosen"]]["held_out"]
    print(f"kept {ev['chosen']}: on held-out networks median error {held['median_ape']:.2f} %, 90th percentile "
          f"{held['p90_ape']:.2f} %, Kendall's tau {held['kendall_tau']:.3f}; refitted on all {ev['networks']}")
    print(f"MACs against measured latency over the sample: Kendall's tau {ev['macs_kendall_tau']:.3f}")
    if ev["repeatability"]:
        r = ev["repeatability"]
        print(f"two passes over {r['networks']} networks differ by {r['median_ape']:.2f} % (median), "
              f"{r['p90_ape']:.2f} % (90th percentile): the measurement noise under every predictor's error")
    print(f"latency model: {saved}")
    return 0


def _bar(label: str, total: int):
    return tqdm(total=total, desc=label, unit=label.rstrip("s"), dynamic_ncols=True)
