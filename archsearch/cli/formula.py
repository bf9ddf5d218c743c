"""``archsearch formula``: size a MobileViT for any MAC budget from a study's GP, without new training; check a
family's law at a budget it was not fitted on (``--validate``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import optuna

from ..gp.models import rung_priors
from ..model.config import ArchConfig
from ..results.formula import MIN_LEVELS, apply_formula, derive_formula
from ..results.holdout import LAW, LAW_CHECKS_ATTR, LawCheck, check_kept, check_lines
from ..results.judge import StudyFacts, study_facts
from ..results.law import deciding_networks, held_out_law
from ..search import Evaluator, Job, feasible_grid, parse_macs
from ..search.evaluator import TrainingEvaluator
from ..search.session import Session
from ..search.study import (
    ResultCache,
    default_storage,
    exclusive_run,
    make_storage,
    open_study,
    quiet_optuna,
    study_dir,
)
from ..train.data import resolve_data_root
from .common import (
    CLIError,
    add_json_option,
    add_quiet_option,
    add_storage_option,
    add_study_option,
    add_threads_option,
    format_count,
    join_threads,
    print_json,
    sigterm_as_interrupt,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "formula",
        help="apply the scaling formula of a study to any MAC budget, or check a family's law at a held-out budget",
        description="Fit the study's GP and, over the MAC range its trained configs span (up to its budget), "
        "take the best config at several MAC levels in each of many GP posterior draws; fit per factor "
        "factor = f_B * (MACs / budget)^e with a 90 % interval on e, and apply it to --mac-budget. Declines when "
        "the evidence is too thin to pin the exponents down, or when the same GP fitted to the accuracies "
        "shuffled across configs gives formulas as narrow (a permutation test; ARCHSEARCH_SHUFFLES refits, "
        "default 20). With --validate (a family study of 4 or more budgets): leave that budget out -- every "
        "job and deciding network in its band dropped -- fit the law at the other budgets (from the deciding "
        "rung's posterior draws, where the family has one), predict its network, train it at the deciding rung "
        "and compare it with the search's own best there and with the baselines. A declined law's median "
        "exponents are checked as well, and the check says the law was declined. Interrupted, the same "
        "command resumes the check.",
    )
    add_study_option(parser)
    add_storage_option(parser)
    parser.add_argument("--mac-budget", help="target MACs: 150M, 0.15G, 150000000 (required without --validate)")
    parser.add_argument("--validate", metavar="BUDGET",
                        help="one of a family study's budgets: the law fitted without it predicts its network, "
                        "which is trained at the deciding rung (at the study's top seeds; once) and compared")
    parser.add_argument("--data", help="dataset root on this machine, if not where the study says (--validate)")
    add_threads_option(parser)
    add_quiet_option(parser)
    add_json_option(parser, "the formula (or the check)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_optuna()
    if (args.mac_budget is None) == (args.validate is None):
        raise CLIError("--mac-budget or --validate: give one")
    storage_url = args.storage or default_storage()
    study = open_study(args.study, make_storage(storage_url), None)
    if args.validate is not None:
        return _validate(args, study, storage_url)
    budget = parse_macs(args.mac_budget)
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


def _validate(args: argparse.Namespace, study: optuna.Study, storage_url: str) -> int:
    facts = study_facts(study, storage_url)
    budget = parse_macs(args.validate)
    budgets = facts.settings.budgets
    if budget not in budgets:
        raise CLIError(f"--validate: {budget / 1e6:g}M is not a budget of study {args.study!r} "
                       f"({facts.settings.budgets_label})")
    if len(budgets) <= MIN_LEVELS:
        raise CLIError(f"--validate: leaving one budget out needs a family of {MIN_LEVELS + 1} budgets or more (the "
                       f"law is fitted at the {MIN_LEVELS} others); study {args.study!r} has {len(budgets)}")
    print(join_threads(args).note())
    data = str(resolve_data_root(args.data or facts.settings.data))
    s = facts.settings
    evaluator = TrainingEvaluator(facts.plan.ladder, data, progress=not args.quiet, latency=s.latency,
                                  checkpoints=study_dir(args.study) / "checkpoints",
                                  weights=study_dir(args.study) / "weights")
    with sigterm_as_interrupt(), exclusive_run(args.study, storage_url):
        check = validate_budget(study, storage_url, facts, budget, evaluator, progress=not args.quiet,
                                declined_ok=True)
    if args.json:
        print_json(check.to_dict())
    else:
        print("\n".join(check_lines(check.to_dict())))
    return 0


def held_out_prediction(facts: StudyFacts, budget: int, declined_ok: bool = False) -> dict:
    """The law fitted on the evidence outside ``budget``'s band (its deciding rung where it has one, else every
    job through the GP), applied at ``budget`` (``results.law.held_out_law``, as a dict); refused in one line
    where the family is too small, or the law declines (unless ``declined_ok``: then the declined law's median
    exponents predict, where it was fitted at all)."""
    ladder = facts.plan.ladder
    done = [e for e in facts.ledger.entries if e.state == "done" and e.job.role != LAW]
    prior = rung_priors([ladder.continues(r) for r in range(ladder.top)]) if ladder.top else None
    try:
        held = held_out_law([(e.job.config, e.macs, float(e.accuracy), e.job.rung) for e in done],
                            facts.settings.factor_space(), facts.settings.budgets, budget, seed=facts.settings.seed,
                            noise_std=[facts.noise[e.job.rung].std for e in done], fidelities=len(ladder.rungs),
                            rung_prior=prior, deciding=deciding_networks(facts), deciding_noise=facts.noise[ladder.top])
    except ValueError as err:
        raise CLIError(f"--validate: {err}") from None
    if held.pick is None or (held.formula.declined and not declined_ok):
        raise CLIError(f"--validate: without {budget / 1e6:g}M, {held.formula.describe()}")
    return {**held.to_dict(), "evidence": len(done)}


def validate_budget(study: optuna.Study, storage_url: str, facts: StudyFacts, budget: int, evaluator: Evaluator,
                    progress: bool = True, fits: Callable[[list[Job]], bool] | None = None,
                    declined_ok: bool = False) -> LawCheck:
    """Predict ``budget``'s network by the law fitted without it (kept in the study, and made again once the
    study has more jobs), train it at the deciding rung at every top seed where it is not trained there yet
    (unless ``fits`` says the jobs do not fit the time left), and compare it there. ``declined_ok``: a declined
    law's median exponents predict too (``formula --validate`` asks for the check; ``run`` spends no time on it)."""
    kept = dict(study.user_attrs.get(LAW_CHECKS_ATTR, {}))
    held = kept.get(str(budget))
    evidence = sum(e.state == "done" and e.job.role != LAW for e in facts.ledger.entries)
    if held is None or held.get("evidence") != evidence or (held["formula"]["declined"] and not declined_ok):
        held = held_out_prediction(facts, budget, declined_ok)
    study.set_user_attr(LAW_CHECKS_ATTR, {**kept, str(budget): held})
    predicted = ArchConfig.from_dict(held["pick"]["config"])
    plan, top = facts.plan, facts.plan.ladder.top
    taken = facts.ledger.taken()
    jobs = [job for s in plan.top_seeds if (job := Job(predicted, top, s, LAW)).key not in taken]
    waiting = [e.job for e in facts.ledger.entries if e.state == "queued" and e.job.role == LAW
               and e.job.config.network_key() == predicted.network_key()]  # queued again by an interrupted check
    if jobs + waiting and (fits is None or fits(jobs + waiting)):
        for job in jobs:
            study.enqueue_trial({}, user_attrs=job.attrs())
        Session(facts.settings, study.study_name, storage_url).run(evaluator, ResultCache(), progress=progress,
                                                                  max_trials=len(jobs) + len(waiting))
        facts = study_facts(study, storage_url)
    return check_kept(facts, budget, held)
