"""``archsearch replay``: run the search strategies against a scored table instead of training (issue 8)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bench import load_table
from ..replay import TOLERANCE_POINTS, Problem, render, replay, write_outputs
from ..search import parse_macs
from ..study import STRATEGIES
from .common import CLIError, print_json, quiet_optuna


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "replay",
        help="run the search strategies against a bench-table instead of training",
        description="Each strategy searches the table's points within the MAC budget through the real search "
        "loop (in-memory Optuna studies; the GP gets the table's points as candidates, the others' proposals "
        "are snapped to the nearest table point not yet evaluated, or skipped when over the budget), once per "
        "seed. Prints the best feasible accuracy after each number of evaluations (mean ± std over seeds), the "
        "evaluations needed to come within --tolerance points of the table's best feasible accuracy, the GP at "
        "N evaluations against random search at 2N, and the winner against the uniform width-multiplier "
        "baseline; writes a self-contained Plotly plot and the full results as JSON.",
    )
    parser.add_argument("--table", required=True, help="a CSV written by archsearch bench-table")
    parser.add_argument("--mac-budget", required=True, help="MAC budget: 300M, 0.3G, 1.2GMACs or 300000000")
    parser.add_argument("--strategy", action="append",
                        help=f"{'|'.join(STRATEGIES)}; repeat or comma-separate (default: all four)")
    parser.add_argument("--trials", type=int, default=20,
                        help="evaluations per search, N (default 20; random runs to 2N when gp is replayed too)")
    parser.add_argument("--seeds", type=int, default=5, help="searches per strategy, seeds 0..K-1 (default 5)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE_POINTS,
                        help=f"accuracy points below the table's best that count as reaching it "
                        f"(default {TOLERANCE_POINTS:g})")
    parser.add_argument("--space", help="factor-space TOML, for a table without its .json settings file")
    parser.add_argument("--out", help="folder of the plot and JSON (default: dashboards/)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def strategies_of(values: list[str] | None) -> list[str]:
    if not values:
        return list(STRATEGIES)
    names = [s.strip() for v in values for s in v.split(",") if s.strip()]
    bad = [s for s in names if s not in STRATEGIES]
    if bad or not names:
        raise CLIError(f"--strategy: {', '.join(map(repr, bad)) or 'empty'} is not one of {', '.join(STRATEGIES)}")
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .. import dashboard

    quiet_optuna()
    budget = parse_macs(args.mac_budget)
    strategies = strategies_of(args.strategy)
    if args.trials < 1:
        raise CLIError(f"--trials: {args.trials} is not a positive number")
    if args.seeds < 1:
        raise CLIError(f"--seeds: {args.seeds} is not a positive number")
    if not 0 <= args.tolerance < 100:
        raise CLIError(f"--tolerance: {args.tolerance:g} is not in [0, 100) points")
    table = load_table(args.table, args.space)
    Problem.at(table, budget)  # a budget below the table fails here, before any progress bar
    runs = args.seeds * len(strategies)
    bar = tqdm(total=runs, desc="searches", unit="search", disable=args.quiet or args.json, file=sys.stderr)


    def done(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    try:
        report = replay(table, budget, strategies, args.trials, args.seeds, args.tolerance, progress=done)
    finally:
        bar.close()
    if report.trials < args.trials:
        print(f"note: only {report.trials} table points fit the budget: --trials capped at {report.trials}",
              file=sys.stderr)
    html, data = write_outputs(report, Path(args.out) if args.out else dashboard.DASHBOARDS_DIR)
    if args.json:
        print_json(report.to_dict())
    else:
        print(render(report))
        print(f"\nplot: {html}\ndata: {data}")
    return 0
