"""``archsearch replay``: run the search strategies against scored tables instead of training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..bench.replay import (
    DEFAULT_STRATEGIES,
    MULTI,
    STRATEGIES,
    Problem,
    Rung,
    Setup,
    default_costs,
    render,
    replay,
    write_outputs,
)
from ..bench.tables import load_table
from ..report import dashboard
from ..search import parse_macs
from ..search.fidelity import Ladder
from ..search.strategies import STRATEGIES as REGISTRY
from ..search.study import quiet_optuna
from .common import CLIError, add_json_option, add_quiet_option, print_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "replay",
        help="run the search strategies against bench-tables instead of training",
        description="Each strategy searches the configs within the MAC budget that every rung's table scored, "
        "through the real search loop (in-memory Optuna studies), once per replay seed; every job's score is "
        "drawn from its rung's tables: one of the config's table seeds, or its one score plus the rung's "
        f"measured noise. Single-fidelity strategies ({', '.join(REGISTRY)}) search the top table; "
        "mf-* strategies (mf-gp: the multi-fidelity GP) run successive halving over every rung. Each search is "
        "judged at a few costs (top-rung-equivalent evaluations) by the true top-rung accuracy (mean over "
        "seeds) of the winner it decides. The design-only strategy is in every report. Prints the picks at "
        "each cost, how often a search picks the table's best, design-only and multi-fidelity against the GP, "
        "and the cost to find a config near the best; writes a self-contained Plotly plot and the results as "
        "JSON. Rows trained at the old rounded resolution are left out (see --all-rows).",
    )
    parser.add_argument("--table", required=True, action="append",
                        help="a CSV written by archsearch bench-table; once per rung, cheapest first")
    parser.add_argument("--seed-table", action="append", default=[],
                        help="a table of the same sample and profile as one --table, with another training seed "
                        "(repeatable); pooled with the --table of its profile")
    parser.add_argument("--mac-budget", required=True, help="MAC budget: 300M, 0.3G, 1.2GMACs or 300000000")
    parser.add_argument("--strategy", action="append",
                        help=f"{'|'.join(REGISTRY)}, or {'|'.join(s for s in STRATEGIES if s.startswith(MULTI))} "
                        f"over every rung; repeat or comma-separate (default: {', '.join(DEFAULT_STRATEGIES)}, "
                        f"the {MULTI}* ones with two or more rungs; design is always added)")
    parser.add_argument("--trials", type=int, default=20,
                        help="the longest search's cost, in top-rung evaluations: N single-fidelity evaluations, "
                        "or the multi-fidelity search that costs as much (default 20)")
    parser.add_argument("--costs", help="costs at which every search is judged, comma-separated (default: N/4, N/2, N)")
    parser.add_argument("--seeds", type=int, default=5, help="replay seeds 0..K-1 per strategy (default 5)")
    parser.add_argument("--noise", choices=("tables", "off"), default="tables",
                        help="tables (default): draw scores from the table seeds, or add the rung's measured noise "
                        "where there is one seed; off: every job scores the config's mean over its seeds")
    parser.add_argument("--cost", choices=("images", "wall"), default="images",
                        help="cost of a job relative to the top rung: images seen (default) or the tables' median "
                        "training wall time")
    parser.add_argument("--promote", type=float, default=1 / 3, help="fraction promoted per rung (default 1/3)")
    parser.add_argument("--top-seeds", type=int, default=1, help="seeds of every top-rung job (default 1)")
    parser.add_argument("--tolerance", type=float, default=0.5,
                        help="accuracy points below the table's best that count as finding it (default 0.5)")
    parser.add_argument("--all-rows", action="store_true",
                        help="also use rows trained at another resolution than today's exact one (old tables)")
    parser.add_argument("--space", help="factor-space TOML, for tables without their .json settings file")
    parser.add_argument("--out", help="folder of the plot and JSON (default: dashboards/)")
    add_json_option(parser, "the results")
    add_quiet_option(parser)
    parser.set_defaults(handler=run)


def strategies_of(values: list[str] | None, rungs: int) -> list[str]:
    if not values:
        return [s for s in DEFAULT_STRATEGIES if rungs > 1 or not s.startswith(MULTI)]
    names = [s.strip() for v in values for s in v.split(",") if s.strip()]
    bad = [s for s in names if s not in STRATEGIES]
    if bad or not names:
        raise CLIError(f"--strategy: {', '.join(map(repr, bad)) or 'empty'} is not one of {', '.join(STRATEGIES)}")
    multi = [s for s in names if s.startswith(MULTI)]
    if multi and rungs < 2:
        raise CLIError(f"--strategy {multi[0]}: give --table once per rung (two or more)")
    if "design" not in names:
        print("note: design added: every replay report shows the design-only search", file=sys.stderr)
    return list(dict.fromkeys(names))


def costs_of(text: str | None, trials: int) -> list[float]:
    if text is None:
        return default_costs(trials)
    try:
        costs = [float(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise CLIError(f"--costs: cannot read {text!r}; write e.g. 5,10,20") from None
    if not costs or min(costs) <= 0:
        raise CLIError(f"--costs: {text!r}: give positive costs, e.g. 5,10,20")
    return costs


def load_rungs(args: argparse.Namespace):
    """One ``Rung`` per --table, each pooled with the --seed-tables of its profile."""
    exact = not args.all_rows
    mains = [load_table(p, args.space, exact) for p in args.table]
    groups = [[t] for t in mains]
    for path in args.seed_table:
        extra = load_table(path, args.space, exact)
        home = [g for g in groups if g[0].fidelity.get("name") == extra.fidelity.get("name")]
        if not home:
            raise CLIError(f"--seed-table: {path} is profile {extra.fidelity.get('name')!r}; no --table has it")
        home[0].append(extra)
    return [Rung.of(g, "--seed-table" if len(g) > 1 else "--table") for g in groups]


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    budget = parse_macs(args.mac_budget)
    for option, value in (("--trials", args.trials), ("--seeds", args.seeds)):
        if value < 1:
            raise CLIError(f"{option}: {value} is not a positive number")
    if not 0 <= args.tolerance < 100:
        raise CLIError(f"--tolerance: {args.tolerance:g} is not in [0, 100) points")
    strategies = strategies_of(args.strategy, len(args.table))
    costs = costs_of(args.costs, args.trials)
    problem = Problem.build(load_rungs(args), budget, args.cost)
    Ladder((problem.top.profile,), args.promote, args.top_seeds)  # bad --promote / --top-seeds fail here
    if max(costs) > len(problem.points):
        print(f"note: only {len(problem.points)} configs fit the budget: single-fidelity searches stop there",
              file=sys.stderr)
    setup = Setup(args.promote, args.top_seeds, args.noise == "tables")
    total = args.seeds * len(set(strategies) | {"design"})
    bar = tqdm(total=total, desc="searches", unit="search", disable=args.quiet or args.json, file=sys.stderr)

    def done(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    try:
        report = replay(problem, strategies, costs, args.seeds, setup, args.tolerance, progress=done)
    finally:
        bar.close()
    html, data = write_outputs(report, Path(args.out) if args.out else dashboard.DASHBOARDS_DIR)
    if args.json:
        print_json(report.to_dict())
    else:
        print(render(report))
        print(f"\nplot: {html}\ndata: {data}")
    return 0
