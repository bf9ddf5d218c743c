"""What a study found, written and printed: ``summary.json``, ``winner.json`` and the text ``run`` prints.

Everything here reads the judge's facts (``results.judge.study_facts``: the study's jobs, its one GP and its
decision); the dashboard and the export read the same facts. Importance and a single budget's scaling
formula come from the same GP; a family's law from its deciding rung (``results.law.study_law``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .. import __version__
from ..results.decision import Decision
from ..results.family import FamilyMember, family_members, family_table
from ..results.formula import (
    FormulaDeclined,
    ScalingFormula,
    derive_formula,
    formula_text,
)
from ..results.holdout import check_kept, check_lines, stored_checks
from ..results.importance import factor_importance, importance_text
from ..results.judge import StudyFacts, study_facts
from ..results.law import (
    DownsizeStep,
    downsize,
    efficientnet_exponents,
    law_statements,
    study_law,
)
from ..results.quantized import rows as quantized_rows
from ..search.jobs import Ledger
from ..search.settings import StudySettings
from ..search.study import study_dir

TOP = 10


def summarize(study: optuna.Study, storage_url: str = "", facts: StudyFacts | None = None) -> dict[str, Any]:
    """``summary.json``: the settings, the counts, the judge's decision and every job, rung by rung (``facts``
    as ``run`` has them, else judged here)."""
    f = facts or study_facts(study, storage_url)
    settings, plan, ledger, decision = f.settings, f.plan, f.ledger, f.decision
    space = settings.factor_space()
    trials = study.get_trials(deepcopy=False)
    done = [e for e in ledger.entries if e.state == "done"]
    trained = {e.job.config.network_key(): e.job.config for e in done}
    formula = None
    pairs = [(c, _macs(ledger, k)) for k, c in trained.items()]
    if f.surrogate is not None:
        formula = (study_law(f, pairs) if settings.is_family
                   else derive_formula(f.surrogate, space, pairs, settings.mac_budget, seed=settings.seed))
    # fANOVA sees the strategy's rung-0 proposals (one fidelity, with their Optuna parameters)
    proposals = [t for t in trials if t.state == TrialState.COMPLETE and t.params and t.user_attrs.get("rung") == 0
                 and "accuracy" in t.user_attrs]
    members = family_members(f) if settings.is_family else ()
    importance = factor_importance(f.surrogate, proposals, settings.seed, budget=settings.mac_budget).to_dict()
    return {
        "study": f.study,
        "storage": f.storage,
        "archsearch_version": __version__,
        "settings": {"mac_budget": settings.mac_budget, "mac_budgets": list(settings.budgets), "ladder": plan.ladder.name, "promote": plan.ladder.promote,
                     "top_seeds": plan.ladder.top_seeds, "finalists": plan.ladder.finalists,
                     "repeats": plan.ladder.repeats, "data": settings.data, "strategy": settings.strategy,
                     "seed": settings.seed, "trials": settings.trials, "latency": latency_setting(settings)},
        "space": settings.space,
        "ladder": settings.ladder,
        "counts": {
            "trained": len(done),
            "by_rung": {p.name: len(ledger.at(r)) for r, p in enumerate(plan.ladder.rungs)},
            "cached": sum(1 for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("cached")),
            "continued": sum(1 for e in done if (e.record.get("resumed_from_epoch") or 0) > 0),
            "infeasible_skipped": sum(1 for t in trials if t.user_attrs.get("infeasible")),
            "failed": sum(e.state == "failed" for e in ledger.entries),
            "running": sum(e.state == "running" for e in ledger.entries),
        },
        "noise": [n.to_dict() for n in f.noise],
        **verdict(decision, ledger),
        "family": None if not settings.is_family else {
            "budgets": list(settings.budgets),
            "verdicts": [{"budget": budget, **verdict(d, ledger)} for budget, d in f.verdicts],
            "members": [m.to_dict() for m in members],
            "downsized": [step.to_dict() for step in _downsized(f, formula, members)],
            "law": law_statements(formula) if formula is not None else [],
            "efficientnet_exponents": efficientnet_exponents(),
            "importance": {str(b): (importance if b == settings.mac_budget else factor_importance(
                f.surrogate, proposals, settings.seed, budget=b).to_dict()) for b in settings.budgets},
            "checks": [check_kept(f, budget, held).to_dict() for budget, held in sorted(stored_checks(study).items())]},
        "rungs": [[e.to_dict() for e in sorted(ledger.at(r), key=lambda e: e.number)]
                  for r in range(plan.ladder.top + 1)],
        "importance": importance,
        "formula": None if formula is None else formula.to_dict(),
        "quantized": None if f.quantize is None else {
            **dataclasses.asdict(f.quantize), "networks": quantized_rows(ledger, plan.ladder.top, f.quantized)},
    }


def _downsized(f: StudyFacts, formula: ScalingFormula | FormulaDeclined | None,
               members: tuple[FamilyMember, ...]) -> tuple[DownsizeStep, ...]:
    """The seed paper's iterative downsizing by the law, from the largest budget's winner (none without a law)."""
    if not isinstance(formula, ScalingFormula) or not members or members[-1].budget != f.settings.budgets[-1]:
        return ()
    return downsize(formula, members[-1].config, f.settings.budgets, f.settings.factor_space(), f.surrogate)


def verdict(decision: Decision, ledger: Ledger) -> dict[str, Any]:
    """One budget's verdict as ``summary.json`` stores it: where, the winner, the baselines, the top networks."""
    return {"decided_at": decision.where(),
            "winner": _winner(decision, ledger) if decision.winner else None,
            "baselines": [m.to_dict() for m in decision.margins],
            "top": [{**n.to_dict(), "p_best": decision.p_best[i] if decision.p_best else None,
                     "estimate": decision.estimate(n) if decision.moved_to else None}
                    for i, n in enumerate(decision.ranked[:TOP])],
            "over_latency_budget": [n.to_dict() for n in decision.over_latency]}


def noise_lines(noise: list[dict[str, Any]], decided: dict[str, Any]) -> list[str]:
    """The deciding rung's noise and bias, the screening rungs' bias, and how the margins' intervals were made."""
    here = noise[decided["rung"]]
    low, high = here["interval"]
    span = f", 95 % interval [{100 * low:.2f}, {100 * high:.2f}]" if high is not None else ""
    lines = [f"noise of one score at {decided['fidelity']}: {100 * here['std']:.2f} points{span} ({here['source']})"]
    for rung, n in enumerate(noise):
        bias = n.get("bias_detail")
        if not bias:
            continue
        where = "" if rung == decided["rung"] else f" (rung {rung})"
        if bias["std"] is None:
            if rung == decided["rung"]:
                lines.append(f"fidelity bias of the deciding rung against {bias['against']}: {bias['source']}")
            continue
        interval = bias.get("interval")
        span = f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval and interval[1] is not None else ""
        counted = ": every margin's interval counts it" if rung == decided["rung"] else ""
        lines.append(f"fidelity bias{where} against {bias['against']}: {100 * bias['std']:.2f} points a network{span} "
                     f"({bias['source']}){counted}")
    if decided.get("intervals"):
        lines.append(f"margins' intervals: {decided['intervals']}")
    return lines


def quantized_lines(quantized: dict[str, Any] | None) -> list[str]:
    """The deciding networks float and quantized, and what the verdict was taken on."""
    if not quantized:
        return []
    on = "the quantized networks" if quantized["objective"] == "quantized" else "the float networks"
    bits = "int8 on ONNX Runtime" if quantized["bits"] == 8 else f"{quantized['bits']}-bit, simulated in torch"
    lines = ["", f"quantized ({quantized['method']}, {bits}); the verdict above is taken on {on}:"]
    for r in quantized["networks"]:
        low, high = r["drop_interval"]
        latency = (f", int8 {r['latency_ms']:.2f} ms vs float {r['float_latency_ms']:.2f} ms"
                   if r["latency_ms"] and r["float_latency_ms"] else "")
        lines.append(f"  {r['config_id']:<34} s{r['seed']} float {100 * r['float_top1']:.2f}% -> "
                     f"{100 * r['quantized_top1']:.2f}%, drop {r['drop']:+.2f} [{low:+.2f}, {high:+.2f}]{latency}")
    return lines


def latency_setting(settings: StudySettings) -> dict[str, Any]:
    """The study's latency budget and backend as the summary shows them (the model only by its kind)."""
    lat = settings.timing
    model = lat.model
    return {"budget_ms": None if lat.budget_s is None else round(lat.budget_s * 1e3, 6),
            "budgets_ms": [round(b * 1e3, 6) for b in lat.budgets_s] if lat.budgets_s else None,
            "backend": lat.backend, "batch": lat.batch, "threads": lat.threads,
            "model": None if model is None else {"kind": model["kind"], "settings": model["settings"],
                                                 "held_out": model.get("evaluation", {}).get("held_out")}}


def _macs(ledger: Ledger, key: tuple) -> int:
    return next(e.macs for e in ledger.entries if e.job.config.network_key() == key)


def _winner(decision: Decision, ledger: Ledger) -> dict[str, Any]:
    w = decision.winner
    first = next(e for e in ledger.entries if e.number == w.trials[0])
    return {**w.to_dict(), **{k: v for k, v in first.to_dict().items() if k not in ("accuracy", "seed")},
            "trial": w.trials[0], "baseline_of": list(decision.winner_is_baseline)}


def winner_document(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The winner as an exportable record: its config plus how it was found and what it was compared with."""
    winner = summary["winner"]
    if winner is None:
        return None
    return {**winner, "study": summary["study"], "strategy": summary["settings"]["strategy"],
            "mac_budget": summary["settings"]["mac_budget"], "archsearch_version": summary["archsearch_version"],
            "decided_at": summary["decided_at"], "baselines": summary["baselines"]}


def write_summary(summary: dict[str, Any]) -> tuple[Path, Path | None]:
    folder = study_dir(summary["study"])
    path = folder / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True))
    winner = winner_document(summary)
    winner_path = None
    if winner is not None:
        winner_path = folder / "winner.json"
        winner_path.write_text(json.dumps(winner, indent=2, sort_keys=True))
    return path, winner_path


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def render(summary: dict[str, Any]) -> str:
    s, c = summary["settings"], summary["counts"]
    by_rung = ", ".join(f"{n} at {name}" for name, n in c["by_rung"].items())
    lat = s.get("latency") or {}
    latency_ms = ", ".join(f"{b:g}" for b in lat.get("budgets_ms") or [lat.get("budget_ms")] if b)
    latency_budget = f" and {latency_ms} ms on {lat['backend']}" if latency_ms else ""
    family = summary.get("family")
    budgets = ", ".join(f"{b / 1e6:g}M" for b in family["budgets"]) if family else f"{s['mac_budget'] / 1e6:.0f}M"
    lines = [
        f"study {summary['study']}: {s['strategy']} search, budget{'s' if family else ''} {budgets} "
        f"MACs{latency_budget}, rungs {s['ladder']} (promote {s['promote']:.2g}, {s['top_seeds']} top seed(s)"
        + (f"; deciding rung: {s['finalists']} finalist(s), {s['repeats']} repeated" if s.get("finalists") else "")
        + f"), seed {s['seed']}",
        f"jobs: {c['trained']} trained ({by_rung}); {c['cached']} of them from the result cache, "
        f"{c.get('continued', 0)} continued from a checkpoint; "
        f"{c['infeasible_skipped']} over budget (skipped, not trained), {c['failed']} failed",
    ]
    member_ms = dict(zip(family["budgets"], lat.get("budgets_ms") or [])) if family else {}
    for v in family["verdicts"] if family else [summary]:
        within = f" and {member_ms[v['budget']]:g} ms" if v.get("budget") in member_ms else ""
        lines += ["", f"==== budget {v['budget'] / 1e6:g}M MACs{within} ===="] if family else [""]
        lines += verdict_lines(v)
    lines += [""] + noise_lines(summary["noise"], summary["decided_at"])
    if family:
        table = family_table([FamilyMember.from_dict(m) for m in family["members"]])
        lines += ["", "the family (each budget's winner):"] + [f"  {line}" for line in table.splitlines()]
        lines += ["", "as the budget grows (the law across the budgets, 90 % intervals):"]
        lines += [f"  {statement}" for statement in family["law"]]
        ef = family["efficientnet_exponents"]
        lines.append("  EfficientNet's compound rule would grow each as MACs^e: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in ef.items()))
        lines += ["", "factor importance at each budget (the GP's mean over the networks within it):"]
        lines += [f"  {int(b) / 1e6:g}M: {imp.get('verdict') or 'no GP'}" for b, imp in family["importance"].items()]
        if family["downsized"]:
            lines.append("  downsized by the law from the largest budget's winner, one step per budget (the seed "
                         "paper's method; GP mean at the top rung): " + "; ".join(
                             f"{d['budget'] / 1e6:g}M {d['config_id']} {100 * d['mean']:.1f}%"
                             for d in family["downsized"]))
        for check in family["checks"]:
            lines += [""] + check_lines(check)
    lines += quantized_lines(summary.get("quantized"))
    if not family:  # a family's importance: at each budget, above
        lines += ["", importance_text(summary["importance"])]
    if summary["formula"] and not (family and summary["formula"]["declined"]):  # a family's decline: said above
        lines += ["", formula_text(summary["formula"])]
    return "\n".join(lines)


def verdict_lines(v: dict[str, Any]) -> list[str]:
    """One budget's verdict (``verdict``) as text: the deciding networks, the winner, its margins."""
    d = v["decided_at"]
    if not v["top"] and not v.get("over_latency_budget"):
        lines = [f"nothing decided yet: no network within the budget has a result at rung {d['rung']} "
                 f"({d['fidelity']})"]
    else:
        lines = [f"decided at rung {d['rung']} ({d['fidelity']})" + ("" if d["reached_top"] else
                                                                     " -- NOT the top rung: the study did not get there"),
                 (f"{'config':<34} {'MACs':>8} {'trained at':>10} {'top-1 (seeds)':>22} "
                  + (f"{'moved to ' + d['moved_to']:>21} " if d.get("moved_to") else "")
                  + f"{'P(best)' if d.get('deciding_rung') else 'GP mean':>8} {'latency':>9}")]
    for r in v["top"]:
        scores = ", ".join(f"{100 * x:.1f}" for x in r["scores"])
        gp = f"{100 * r['posterior_mean']:.2f}%" if r["posterior_mean"] is not None else "-"
        if r.get("p_best") is not None:
            gp = f"{r['p_best']:.2f}"
        moved = f"{100 * r['estimate']:>20.2f}% " if r.get("estimate") is not None else ""
        lines.append(f"{r['config_id']:<34} {r['macs'] / 1e6:>7.1f}M {r['trained_resolution'] or '-':>8} px "
                     f"{100 * r['accuracy']:>6.2f}% ({scores}) {moved}{gp:>8} {_ms(r.get('latency_ms')):>9}")
    for r in v.get("over_latency_budget", []):
        lines.append(f"{r['config_id']:<34} measured {_ms(r['latency_ms'])}: OVER the latency budget, never the winner "
                     f"(top-1 {100 * r['accuracy']:.2f}%)")
    w = v["winner"]
    lines.append("")
    if w:
        lines.append(f"winner:   {w['config_id']}  {w['macs'] / 1e6:.1f}M MACs, trained at {w['trained_resolution']} px, "
                     f"top-1 {100 * w['accuracy']:.2f}% over {len(w['seeds'])} seed(s)"
                     + (f", {_ms(w['latency_ms'])} on {w['latency_backend']}" if w.get("latency_ms") else ""))
        tied = d.get("tied_with_winner", 0)
        if d.get("clear") is not None:
            p = v["top"][0]["p_best"]
            lines.append(f"          P(best) {p:.2f} over posterior draws of seeds and validation images: "
                         + ("the evidence puts it first" if d["clear"] else
                            "the most likely best, not a clear one -- no network is first by the evidence"))
        elif tied:
            lines.append(f"          level with {tied} other network(s) by the GP's mean (the study's scores differ "
                         f"by no more than their noise): ranked among them by its own score, then by cost")
        if w.get("baseline_of"):
            lines.append(f"          it is the {' and '.join(w['baseline_of'])} baseline: the search found no better "
                         f"network at {d['fidelity']}")
    for b in v["baselines"]:
        if b["config_id"] is None:
            lines.append(f"  {b['kind']:<17} {b['words']}")
            continue
        lines.append(f"  {b['kind']:<17} {b['config_id']}  {b['macs'] / 1e6:.1f}M, top-1 {100 * b['accuracy']:.2f}%")
        if b["margin"] is not None:
            other = "; ".join(f"{100 * v:+.2f} at rung {k}" for k, v in b["margin_by_rung"].items())
            lines.append(f"  {'':<17} {b['words']}" + (f" (point margin {other})" if other else ""))
    return lines
