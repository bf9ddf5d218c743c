"""``archsearch bench-table``: score a space-filling sample of configs into a resumable CSV table (issue 8)."""

from __future__ import annotations

import argparse
import sys

from ..bench import (
    BASELINE_BUDGETS,
    baseline_configs,
    default_table_path,
    format_macs,
    generate_table,
    load_space,
    load_table,
    meta_path,
    rank_agreement,
    resolve_profile,
    sample_lines,
    select_configs,
)
from ..search import BudgetError, parse_macs
from ..training import PROFILES
from .common import CLIError, add_threads_option, join_threads, sigterm_as_interrupt


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench-table",
        help="score a space-filling sample of configs into a table for replays (resumable)",
        description="Pick a deterministic space-filling sample of the distinct networks whose MACs lie in "
        "[--min-macs, --max-macs] (the uniform width-multiplier baselines of "
        f"{', '.join(format_macs(b) for b in BASELINE_BUDGETS)} first, then greedy maximin in the encoded "
        "factor cube, round-robin over bands of log-MACs), score each with one fidelity profile and append a "
        "row to the CSV as soon as it is done. Re-running the command skips the rows already there (a larger "
        "--configs extends the same sample); the settings are kept in TABLE.json beside the table, and "
        "resuming with other ones is an error. Then: archsearch replay --table TABLE.",
    )
    parser.add_argument("--out", help="the CSV table (default: benchmarks/table_v2_PROFILE.csv under the current directory)")
    parser.add_argument("--configs", type=int, default=150, help="configs in the sample (default 150)")
    parser.add_argument("--min-macs", default="100M", help="cheapest config to sample (default 100M)")
    parser.add_argument("--max-macs", default="1G", help="dearest config to sample (default 1G)")
    parser.add_argument("--profile", help="fidelity: a training profile (" + ", ".join(PROFILES) + ") "
                        "or JSON overrides on one, inline or a .json file: "
                        "'{\"base\": \"smoke\", \"name\": \"smoke2\", \"epochs\": 6}' "
                        "(default: proxy on a GPU, smoke on a CPU)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every config (default 0)")
    parser.add_argument("--sample-seed", type=int, default=0,
                        help="seed of the sample's tie-breaking order (default 0)")
    parser.add_argument("--data", help="ImageFolder root (default: $ARCHSEARCH_DATA, else Imagenette in "
                                       "../shared/datasets)")
    parser.add_argument("--space", help="factor-space TOML file (default: the v2 space shipped in the package)")
    parser.add_argument("--dry-run", action="store_true", help="list the sample and exit; train nothing")
    parser.add_argument("--compare", metavar="OTHER",
                        help="train nothing: print Kendall's tau between the top-1 of --out and of the table "
                        "OTHER over the configs both scored (e.g. the smoke and proxy tables of one sample)")
    add_threads_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _macs(option: str, text: str) -> int:
    try:
        return parse_macs(text)
    except BudgetError as err:
        raise CLIError(str(err).replace("--mac-budget", option, 1)) from None


def run(args: argparse.Namespace) -> int:
    import torch

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
                                args.sample_seed, progress=not args.quiet)
    print(f"{result.added} scored now, {result.skipped} already in the table; {result.path}")
    return 0


def compare(args: argparse.Namespace) -> int:
    if not args.out:
        raise CLIError("--compare: name the first table with --out")
    result = rank_agreement(load_table(args.out, args.space), load_table(args.compare, args.space))
    if result["kendall_tau"] is None:
        raise CLIError(f"--compare: tau is undefined over the {result['configs']} config(s) both tables scored "
                       "(fewer than 2, or one table's accuracies are all equal)")
    print(f"{result['configs']} configs scored in both: Kendall's tau {result['kendall_tau']:.3f} "
          f"(p = {result['p_value']:.2g}), Spearman's rho {result['spearman_rho']:.3f} "
          f"({result['a_profile']} in {result['a']} vs {result['b_profile']} in {result['b']})")
    same = "the same config" if result["a_best"] == result["b_best"] else "different configs"
    print(f"mean |top-1 difference| {100 * result['mean_abs_diff']:.2f} points; best of the shared configs: "
          f"{result['a_best']} vs {result['b_best']} ({same})")
    return 0

