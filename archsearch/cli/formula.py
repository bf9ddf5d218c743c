"""``archsearch formula``: size a MobileViT for any MAC budget from a study's GP, without new training."""

from __future__ import annotations

import argparse

from ..formula import apply_formula, derive_formula
from ..search import feasible_grid, parse_macs
from ..study import StudySettings, default_storage, make_storage, open_study
from ..summary import fit_surrogate
from .common import CLIError, format_count, print_json, quiet_optuna


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "formula",
        help="apply the GP-derived scaling formula of a study to any MAC budget",
        description="Fit the study's GP, derive the downsizing path from v2 width 1.0 at 256 px (the factor step "
        "with the least predicted accuracy loss per MAC saved, repeatedly), fit per-factor exponents "
        "factor = base * (MACs / base_MACs)^e along it, and apply them to --mac-budget.",
    )
    parser.add_argument("--study", required=True, help="name of a study made by archsearch run")
    parser.add_argument("--storage", help=f"Optuna storage URL (default: {default_storage()})")
    parser.add_argument("--mac-budget", required=True, help="target MACs: 150M, 0.15G, 150000000")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    budget = parse_macs(args.mac_budget)
    study = open_study(args.study, make_storage(args.storage or default_storage()), None)
    settings = StudySettings.from_study(study)
    space = settings.factor_space()
    feasible_grid(space, budget)  # one-line error if the budget is below the cheapest config
    surrogate = fit_surrogate(study, settings, settings.seed)
    if surrogate is None:
        raise CLIError(f"--study: {args.study!r} has fewer than 2 trained trials; run more trials first")
    formula = derive_formula(surrogate, space)
    config, macs, mean, std = apply_formula(formula, budget, space, surrogate)
    if args.json:
        print_json({"formula": formula.to_dict(), "mac_budget": budget, "config": config.to_dict(),
                    "config_id": config.id, "macs": macs, "predicted_accuracy": mean, "predicted_std": std})
        return 0
    print(f"scaling formula of study {args.study} (downsizing path of {len(formula.path)} steps):")
    print(formula.describe())
    print(f"\nfor {format_count(budget)} MACs: {config.id}  ({format_count(macs)} MACs)")
    print(f"predicted top-1 {100 * mean:.2f}% +- {100 * 1.96 * std:.2f} (95 %, GP at the study's fidelity "
          f"{settings.profile})")
    return 0
