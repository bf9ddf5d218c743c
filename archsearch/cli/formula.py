"""``archsearch formula``: size a MobileViT for any MAC budget from a study's GP, without new training."""

from __future__ import annotations

import argparse
import sys

from ..results.formula import apply_formula, derive_formula
from ..results.judge import study_facts
from ..search import feasible_grid, parse_macs
from ..search.study import default_storage, make_storage, open_study, quiet_optuna
from .common import (
    CLIError,
    add_json_option,
    add_storage_option,
    add_study_option,
    format_count,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "formula",
        help="apply the scaling formula of a study to any MAC budget",
        description="Fit the study's GP and, over the MAC range its trained configs span (up to its budget), "
        "take the best config at several MAC levels in each of many GP posterior draws; fit per factor "
        "factor = f_B * (MACs / budget)^e with a 90 % interval on e, and apply it to --mac-budget. Declines when "
        "the evidence is too thin to pin the exponents down, or when the same GP fitted to the accuracies "
        "shuffled across configs gives formulas as narrow (a permutation test; ARCHSEARCH_SHUFFLES refits, "
        "default 20).",
    )
    add_study_option(parser)
    add_storage_option(parser)
    parser.add_argument("--mac-budget", required=True, help="target MACs: 150M, 0.15G, 150000000")
    add_json_option(parser, "the formula")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    budget = parse_macs(args.mac_budget)
    study = open_study(args.study, make_storage(args.storage or default_storage()), None)
    facts = study_facts(study)  # the study's one GP: every rung and seed, with measured noise
    settings, surrogate = facts.settings, facts.surrogate
    space = settings.factor_space()
    feasible_grid(space, budget)  # one-line error if the budget is below the cheapest config
    if surrogate is None:
        raise CLIError(f"--study: {args.study!r} has fewer than 2 trained jobs; run more first")
    trained = {e.job.config.network_key(): (e.job.config, e.macs) for e in facts.ledger.entries if e.state == "done"}
    formula = derive_formula(surrogate, space, list(trained.values()), settings.mac_budget, seed=settings.seed)
    if formula.declined:
        raise CLIError(f"--study: {args.study!r} gives {formula.describe()}")
    pick = apply_formula(formula, budget, space, surrogate)
    if args.json:
        print_json({"formula": formula.to_dict(), "mac_budget": budget, "config": pick.config.to_dict(),
                    "config_id": pick.config.id, "macs": pick.macs, "predicted_accuracy": pick.mean,
                    "predicted_std": pick.std, "extrapolated": pick.extrapolated})
        return 0
    print(f"study {args.study}: {formula.describe()}")
    if pick.extrapolated:
        lo, hi = formula.macs_range
        print(f"warning: {format_count(budget)} MACs lies outside the fitted range {format_count(lo)}-"
              f"{format_count(hi)}; the formula extrapolates", file=sys.stderr)
    print(f"\nfor {format_count(budget)} MACs: {pick.config.id}  ({format_count(pick.macs)} MACs)")
    top = settings.fidelity_ladder().rungs[-1].name
    print(f"predicted top-1 {100 * pick.mean:.2f}% +- {100 * 1.96 * pick.std:.2f} (95 %, the GP at the study's "
          f"top rung, {top})")
    return 0
