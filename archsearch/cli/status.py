"""``archsearch status``: where a study stands, per worker."""

from __future__ import annotations

import argparse
from collections import defaultdict

from optuna.trial import TrialState

from ..search import best_feasible
from ..study import StudySettings, default_storage, make_storage, networks_done, open_study, trained_trials
from .common import print_json, quiet_optuna

COLUMNS = ("done", "running", "queued", "failed", "over_budget")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="trials done/running/failed per worker, and the best so far",
                            description="Show a study's progress: trials per worker and state, and the best "
                            "feasible accuracy so far.")
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--storage", help=f"Optuna storage URL (default: {default_storage()})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    study = open_study(args.study, make_storage(args.storage or default_storage()), None)
    settings = StudySettings.from_study(study)
    rows: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    for t in study.get_trials(deepcopy=False):
        worker = t.user_attrs.get("worker", "(queued)")
        if t.state == TrialState.COMPLETE:
            rows[worker]["done"] += 1
        elif t.state == TrialState.RUNNING:
            rows[worker]["running"] += 1
        elif t.state == TrialState.WAITING:
            rows[worker]["queued"] += 1
        elif t.state == TrialState.FAIL:
            rows[worker]["failed"] += 1
        elif t.user_attrs.get("infeasible"):
            rows[worker]["over_budget"] += 1
    trained = trained_trials(study)
    best = max(trained, key=lambda t: t.user_attrs["accuracy"], default=None)
    report = {
        "study": args.study,
        "strategy": settings.strategy,
        "mac_budget": settings.mac_budget,
        "profile": settings.profile,
        "networks_done": networks_done(study),
        "networks_target": settings.trials,
        "workers": dict(rows),
        "best": None if best is None else {"trial": best.number, "config_id": best.user_attrs["config_id"],
                                           "accuracy": best_feasible(study, settings.mac_budget)},
    }
    if args.json:
        print_json(report)
        return 0
    print(f"study {args.study}: {settings.strategy}, budget {settings.mac_budget / 1e6:g}M, profile "
          f"{settings.profile}: {report['networks_done']}/{settings.trials} networks trained")
    print(f"{'worker':<28}" + "".join(f"{c:>12}" for c in COLUMNS))
    for worker, counts in sorted(rows.items()):
        print(f"{worker:<28}" + "".join(f"{counts[c]:>12}" for c in COLUMNS))
    if best is not None:
        print(f"best so far: {best.user_attrs['config_id']} top-1 {100 * best.user_attrs['accuracy']:.2f}% "
              f"(trial {best.number})")
    return 0
