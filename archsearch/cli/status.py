"""``archsearch status``: where a study stands, per worker."""

from __future__ import annotations

import argparse
from collections import defaultdict

from optuna.trial import TrialState

from ..search import Ledger
from ..search.study import StudySettings, default_storage, make_storage, open_study
from .common import print_json, quiet_optuna

COLUMNS = ("done", "running", "queued", "failed", "over_budget")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="jobs done/running/failed per worker and per rung, and the best so far",
                            description="Show a study's progress: jobs (trainings) per worker and state, jobs "
                            "done at each rung, and the best top-rung score so far (one score: the decision, "
                            "with noise and baselines, is made by the summary at the end of run).")
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
    ledger = Ledger(study.get_trials(deepcopy=False))
    ladder = settings.fidelity_ladder()
    top = ladder.top
    reached = max((r for r in range(top + 1) if ledger.at(r)), default=0)
    feasible = [e for e in ledger.at(reached) if e.macs <= settings.mac_budget]
    best = max(feasible, key=lambda e: e.accuracy, default=None)
    report = {
        "study": args.study,
        "strategy": settings.strategy,
        "mac_budget": settings.mac_budget,
        "rungs": settings.profile,
        "proposals_done": len(ledger.search_networks(0, ("done", "failed"))),
        "proposals_target": settings.trials,
        "jobs_by_rung": {p.name: len(ledger.at(r)) for r, p in enumerate(ladder.rungs)},
        "workers": dict(rows),
        "best": None if best is None else {"trial": best.number, "config_id": best.job.config.id,
                                           "rung": best.job.rung, "accuracy": best.accuracy},
    }
    if args.json:
        print_json(report)
        return 0
    rungs = ", ".join(f"{n} at {name}" for name, n in report["jobs_by_rung"].items())
    print(f"study {args.study}: {settings.strategy}, budget {settings.mac_budget / 1e6:g}M, rungs {settings.profile}: "
          f"{report['proposals_done']}/{settings.trials} proposals; jobs done: {rungs}")
    print(f"{'worker':<28}" + "".join(f"{c:>12}" for c in COLUMNS))
    for worker, counts in sorted(rows.items()):
        print(f"{worker:<28}" + "".join(f"{counts[c]:>12}" for c in COLUMNS))
    if best is not None:
        print(f"best single score so far at rung {best.job.rung}: {best.job.config.id} top-1 "
              f"{100 * best.accuracy:.2f}% (trial {best.number})")
    return 0
