"""``archsearch status``: where a study stands, per worker, and the winner so far as the judge decides it."""

from __future__ import annotations

import argparse
from collections import defaultdict

from optuna.trial import TrialState

from ..results.decision import Decision
from ..results.judge import study_facts
from ..search.study import default_storage, make_storage, open_study, quiet_optuna
from .common import add_json_option, add_storage_option, add_study_option, print_json

COLUMNS = ("done", "running", "queued", "failed", "over_budget")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="jobs done/running/failed per worker and per rung, and the winner so far",
                            description="Show a study's progress: jobs (trainings) per worker and state, jobs "
                            "done at each rung, and the winner so far, decided as the summary decides it (the "
                            "GP's posterior mean at the highest rung reached, not the highest single score).")
    add_study_option(parser)
    add_storage_option(parser)
    add_json_option(parser, "the status")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    url = args.storage or default_storage()
    study = open_study(args.study, make_storage(url), None)
    facts = study_facts(study, url)
    settings, ledger, ladder = facts.settings, facts.ledger, facts.plan.ladder
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
    report = {
        "study": args.study,
        "strategy": settings.strategy,
        "mac_budget": settings.mac_budget,
        "mac_budgets": list(settings.budgets),
        "rungs": settings.ladder_name,
        "proposals_done": len(ledger.search_networks(0, ("done", "failed"))),
        "proposals_target": settings.trials,
        "jobs_by_rung": {p.name: len(ledger.at(r)) for r, p in enumerate(ladder.rungs)},
        "workers": dict(rows),
        "winner": _winner(facts.decision),
        "winners": {str(budget): _winner(d) for budget, d in facts.verdicts},  # a family's, per budget
    }
    if args.json:
        print_json(report)
        return 0
    rungs = ", ".join(f"{n} at {name}" for name, n in report["jobs_by_rung"].items())
    print(f"study {args.study}: {settings.strategy}, budget {settings.budgets_label}, "
          f"rungs {settings.ladder_name}: "
          f"{report['proposals_done']}/{settings.trials} proposals; jobs done: {rungs}")
    print(f"{'worker':<28}" + "".join(f"{c:>12}" for c in COLUMNS))
    for worker, counts in sorted(rows.items()):
        print(f"{worker:<28}" + "".join(f"{counts[c]:>12}" for c in COLUMNS))
    for budget, decision in facts.verdicts:
        print((f"at {budget / 1e6:g}M: " if settings.is_family else "") + _winner_line(decision))
    return 0


def _winner(decision: Decision) -> dict | None:
    """The judge's winner so far, as the summary will name it, or None."""
    w = decision.winner
    if w is None:
        return None
    return {"config_id": w.config.id, "trial": w.trials[0], "rung": w.rung, "fidelity": w.fidelity,
            "reached_top": decision.reached_top, "accuracy": w.mean, "seeds": list(w.seeds),
            "posterior_mean": w.posterior_mean, "baseline_of": list(decision.winner_is_baseline)}


def _winner_line(decision: Decision) -> str:
    """The judge's winner in words (never the highest single score: ``results.decision`` says why)."""
    w = decision.winner
    if w is None:
        return f"winner so far: none yet (no network of the search trained at {decision.fidelity})"
    where = f"rung {decision.rung} ({decision.fidelity}" + (")" if decision.reached_top else ", not yet the top rung)")
    gp = f", GP mean {100 * w.posterior_mean:.2f}%" if w.posterior_mean is not None else ""
    kinds = decision.winner_is_baseline
    return (f"winner so far, decided at {where}: {w.config.id} top-1 {100 * w.mean:.2f}% over {len(w.seeds)} "
            f"seed(s){gp} (trial {w.trials[0]})" + (f"; the {' and '.join(kinds)} baseline" if kinds else "")
            + "\n(the summary at the end of 'archsearch run' gives its margins over the baselines)")
