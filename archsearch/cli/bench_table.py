"""``archsearch bench-table``: score a space-filling sample of configs into a resumable CSV table (issue 8)."""

from __future__ import annotations

import argparse
import sys

import torch

from ..bench.scoring import generate_table
from ..bench.table import (
    BASELINE_BUDGETS,
    baseline_configs,
    default_table_path,
    format_macs,
    load_space,
    meta_path,
    resolve_profile,
    sample_lines,
    select_configs,
)
from ..bench.tables import chain_agreement, check_group, load_table
from ..search import BudgetError, parse_macs
from ..train.recipe import PROFILES
from .common import (
    CLIError,
    add_data_option,
    add_quiet_option,
    add_space_option,
    add_threads_option,
    join_threads,
    sigterm_as_interrupt,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench-table",
        help="score a space-filling sample of configs into a table for replays (resumable)",
        description="Pick a deterministic space-filling sample of the distinct networks whose MACs lie in "
        "[--min-macs, --max-macs] (the grid-width baselines of "
        f"{', '.join(format_macs(b) for b in BASELINE_BUDGETS)} that lie in that range first, then greedy "
        "maximin in the encoded factor cube, round-robin over bands of log-MACs), score each with one training "
        "profile and append a row to the CSV as soon as it is done. Re-running the command skips the rows "
        "already there (a larger --configs extends the same sample; rows trained at the old rounded resolution "
        "are scored again); the settings are kept in TABLE.json beside the table, and resuming with other ones "
        "is an error. Then: archsearch replay --table TABLE.",
    )
    parser.add_argument("--out", help="the CSV table (default: benchmarks/table_v2_PROFILE.csv under the current directory)")
    parser.add_argument("--configs", type=int, default=150, help="configs in the sample (default 150)")
    parser.add_argument("--min-macs", default="100M", help="cheapest config to sample (default 100M)")
    parser.add_argument("--max-macs", default="1G", help="dearest config to sample (default 1G)")
    parser.add_argument("--profile", help="training profile (" + ", ".join(PROFILES) + ") "
                        "or JSON overrides on one, inline or a .json file: "
                        "'{\"base\": \"smoke\", \"name\": \"smoke2\", \"epochs\": 6}' "
                        "(default: proxy on a GPU, smoke on a CPU)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every config (default 0)")
    parser.add_argument("--sample-seed", type=int, default=0,
                        help="seed of the sample's tie-breaking order (default 0)")
    add_data_option(parser)
    add_space_option(parser)
    parser.add_argument("--dry-run", action="store_true", help="list the sample and exit; train nothing")
    parser.add_argument("--curve", action="store_true",
                        help="also score every epoch (column curve): the scores a promotion that continues from "
                        "a checkpoint of this schedule would see, for the continue-or-retrain comparison")
    parser.add_argument("--compare", metavar="OTHER", action="append",
                        help="train nothing: rank agreement (Kendall's tau, Spearman's rho, mean |top-1 difference|, "
                        "same best config?) of --out and OTHER over the configs both scored. Repeat for a chain of "
                        "profiles, cheapest first (--out SMOKE --compare SHORT --compare REFERENCE): each "
                        "consecutive pair, then the first against the last. Any of them may be several tables of "
                        "one profile with other seeds, comma-separated (A_s0.csv,A_s1.csv): top-1 is averaged over "
                        "them")
    parser.add_argument("--all-rows", action="store_true",
                        help="with --compare: also use rows trained at another resolution than today's exact one "
                        "(tables scored before the exact resolution; left out by default)")
    add_threads_option(parser)
    add_quiet_option(parser)
    parser.set_defaults(handler=run)


def _macs(option: str, text: str) -> int:
    try:
        return parse_macs(text)
    except BudgetError as err:
        raise CLIError(str(err).replace("--mac-budget", option, 1)) from None


def run(args: argparse.Namespace) -> int:
    min_macs, max_macs = _macs("--min-macs", args.min_macs), _macs("--max-macs", args.max_macs)
    if min_macs > max_macs:
        raise CLIError(f"--min-macs: {args.min_macs} is above --max-macs {args.max_macs}")
    if args.configs < 1:
        raise CLIError(f"--configs: {args.configs} is not a positive number")
    if args.compare:
        return compare(args)
    gpu = torch.cuda.is_available()
    spec = args.profile or ("proxy" if gpu else "smoke")
    profile = resolve_profile(spec)
    space, _ = load_space(args.space)
    out = args.out or default_table_path(profile.name, space.family)
    baselines = baseline_configs(space)
    sample = select_configs(space, args.configs, min_macs, max_macs, args.sample_seed, baselines)
    if args.dry_run:
        print("\n".join(sample_lines(sample, baselines)))
        return 0
    if len(sample) < args.configs:
        print(f"warning: only {len(sample)} distinct networks lie in {args.min_macs}..{args.max_macs}",
              file=sys.stderr)
    device = f"GPU {torch.cuda.get_device_name(0)}" if gpu else "CPU (no GPU found)"
    reduced = "" if gpu or profile.name not in ("proxy", "full") else "; a GPU profile on a CPU: this takes very long"
    print(join_threads(args).note())
    print(f"table {out} (settings in {meta_path(out)})")
    print(f"{len(sample)} configs in {args.min_macs}..{args.max_macs} MACs, profile {profile.name} on {device}"
          + ("" if gpu else ", a reduced CPU profile") + reduced + f", seed {args.seed}")
    with sigterm_as_interrupt():
        result = generate_table(out, args.configs, min_macs, max_macs, spec, args.seed, args.data, args.space,
                                args.sample_seed, progress=not args.quiet, curve=args.curve)
    again = f" ({result.rescored} of them again: trained at the old rounded resolution)" if result.rescored else ""
    print(f"{result.added} scored now{again}, {result.skipped} already in the table; {result.path}")
    return 0


def compare(args: argparse.Namespace) -> int:
    if not args.out:
        raise CLIError("--compare: name the first table with --out")
    chain = []
    for option, spec in [("--out", args.out)] + [("--compare", c) for c in args.compare]:
        paths = [p.strip() for p in spec.split(",") if p.strip()]
        if not paths:
            raise CLIError(f"{option}: empty")
        group = [load_table(p, args.space, exact_only=not args.all_rows) for p in paths]
        check_group(group, option)
        chain.append(group)
        for t in group:
            if t.inexact and t.exact_only:
                print(f"note: left out {t.inexact} row(s) of {t.path} trained at another resolution than today's "
                      "exact one (--all-rows keeps them)", file=sys.stderr)
    results = chain_agreement(chain)
    if len(results) == 1 and results[0]["kendall_tau"] is None:
        raise CLIError(f"--compare: tau is undefined over the {results[0]['configs']} config(s) both tables scored "
                       "(fewer than 2, or one table's accuracies are all equal)")
    if len(results) > 1:
        names = [f"{i} = {g[0].fidelity.get('name')} (seed {', '.join(str(t.seed) for t in g)})"
                 for i, g in enumerate(chain, 1)]
        print("fidelities, cheapest first: " + "; ".join(names))
    for result in results:
        prefix, indent = (f"{result['pair']}: ", "    ") if len(results) > 1 else ("", "")
        lines = agreement_lines(result)
        print(prefix + lines[0])
        print(indent + lines[1])
    return 0


def agreement_lines(result: dict) -> list[str]:
    """Two lines: tau, rho and the tables; the mean difference and whether both pick the same best."""
    if result["kendall_tau"] is None:
        first = f"{result['configs']} configs scored in both: Kendall's tau undefined"
    else:
        first = (f"{result['configs']} configs scored in both: Kendall's tau {result['kendall_tau']:.3f} "
                 f"(p = {result['p_value']:.2g}), Spearman's rho {result['spearman_rho']:.3f}")
    first += f" ({result['a_profile']} in {result['a']} vs {result['b_profile']} in {result['b']})"
    if result["mean_abs_diff"] is None:
        return [first, "no config scored in both"]
    same = "the same config" if result["a_best"] == result["b_best"] else "different configs"
    return [first, f"mean |top-1 difference| {100 * result['mean_abs_diff']:.2f} points; best of the shared configs: "
                   f"{result['a_best']} vs {result['b_best']} ({same})"]
