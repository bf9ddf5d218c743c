"""What a study found: top trials, the winner against the uniform-scaling baseline, and how much each
factor matters (the GP's ARD length scales beside Optuna's fANOVA importance). Written to
``studies/NAME/summary.json`` and ``studies/NAME/winner.json``; the winner file is what ``export`` reads.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import __version__
from .formula import derive_formula, formula_text
from .space import FACTORS
from .study import StudySettings, config_from_params, redact, study_dir, trained_trials
from .surrogate import GPSurrogate

TOP = 10


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """One trained trial as stored: config, cost, accuracy and how it was measured."""
    a = trial.user_attrs
    record = a.get("record", {})
    return {
        "trial": trial.number,
        "role": a.get("role", "search"),
        "config": a["config"],
        "config_id": a["config_id"],
        "macs": a["macs"],
        "params": a["params"],
        "accuracy": a.get("accuracy"),
        "top5": record.get("top5"),
        "fidelity": record.get("fidelity", {}),
        "resolution_trained": record.get("resolution"),
        "wall_s": record.get("wall_s"),
        "cached": a.get("cached", False),
        "seed": record.get("seed"),
        "data": record.get("dataset"),
    }


def fit_surrogate(study: optuna.Study, settings: StudySettings, seed: int = 0) -> GPSurrogate | None:
    trials = trained_trials(study)
    if len(trials) < 2:
        return None
    space = settings.factor_space()
    configs = [config_from_params(t.params, space) for t in trials]
    return GPSurrogate(space, seed=seed).fit(configs, [t.user_attrs["accuracy"] for t in trials])


def fanova_importance(study: optuna.Study, seed: int = 0) -> dict[str, float] | None:
    trials = trained_trials(study)
    if len(trials) < 3 or len({t.user_attrs["accuracy"] for t in trials}) < 2:
        return None
    view = optuna.create_study(directions=["maximize"])
    for t in trials:  # a single-objective copy, so multi-objective (NSGA-III) studies work the same way
        view.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                 value=t.user_attrs["accuracy"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importance = optuna.importance.get_param_importances(
            view, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    return {k: round(v, 4) for k, v in importance.items()}


def summarize(study: optuna.Study, storage_url: str) -> dict[str, Any]:
    settings = StudySettings.from_study(study)
    budget = settings.mac_budget
    trained = [trial_record(t) for t in trained_trials(study)]
    feasible = sorted((r for r in trained if r["macs"] <= budget), key=lambda r: -r["accuracy"])
    baseline = next((r for r in trained if r["role"] == "baseline"), None)
    winner = feasible[0] if feasible else None
    states = [t.state for t in study.get_trials(deepcopy=False)]
    surrogate = fit_surrogate(study, settings, settings.seed)
    formula = None
    if surrogate is not None and settings.factor_space().family == "v2":
        formula = derive_formula(surrogate, settings.factor_space()).to_dict()
    return {
        "study": study.study_name,
        "storage": redact(storage_url),
        "archsearch_version": __version__,
        "settings": {k: v for k, v in settings.__dict__.items() if k != "space"},
        "space": settings.space,
        "counts": {
            "trained": len(trained),
            "infeasible_skipped": sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
                                      if t.user_attrs.get("infeasible")),
            "failed": states.count(TrialState.FAIL),
            "running": states.count(TrialState.RUNNING),
            "cached": sum(1 for r in trained if r["cached"]),
        },
        "top": feasible[:TOP],
        "winner": winner,
        "baseline": baseline,
        "winner_minus_baseline": (round(winner["accuracy"] - baseline["accuracy"], 6)
                                  if winner and baseline else None),
        "importance": {
            "gp_lengthscales": surrogate.lengthscales() if surrogate else None,
            "fanova": fanova_importance(study, settings.seed),
        },
        "formula": formula,
    }


def winner_document(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The winner as an exportable record: its config plus how it was found and what it beat."""
    winner = summary["winner"]
    if winner is None:
        return None
    return {
        **winner,
        "study": summary["study"],
        "strategy": summary["settings"]["strategy"],
        "mac_budget": summary["settings"]["mac_budget"],
        "archsearch_version": summary["archsearch_version"],
        "baseline": summary["baseline"],
        "winner_minus_baseline": summary["winner_minus_baseline"],
    }


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


def render(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    c = summary["counts"]
    lines = [
        f"study {summary['study']}: {s['strategy']} search, budget {s['mac_budget'] / 1e6:.0f}M MACs, "
        f"profile {s['profile']}, seed {s['seed']}",
        f"trials: {c['trained']} trained ({c['cached']} from cache), {c['infeasible_skipped']} over budget "
        f"(skipped, not trained), {c['failed']} failed",
        "",
        f"{'#':>4} {'role':<8} {'config':<30} {'MACs':>8} {'params':>8} {'top-1':>7}",
    ]
    for r in summary["top"]:
        lines.append(f"{r['trial']:>4} {r['role']:<8} {r['config_id']:<30} {r['macs'] / 1e6:>7.1f}M "
                     f"{r['params'] / 1e6:>7.2f}M {100 * r['accuracy']:>6.2f}%")
    w, b = summary["winner"], summary["baseline"]
    lines.append("")
    if w:
        lines.append(f"winner:   {w['config_id']}  {w['macs'] / 1e6:.1f}M MACs  top-1 {100 * w['accuracy']:.2f}%")
    if b:
        lines.append(f"baseline: {b['config_id']}  {b['macs'] / 1e6:.1f}M MACs  top-1 {100 * b['accuracy']:.2f}% "
                     "(width multiplier alone)")
    if summary["winner_minus_baseline"] is not None:
        lines.append(f"winner - baseline: {100 * summary['winner_minus_baseline']:+.2f} points")
    gp, fanova = summary["importance"]["gp_lengthscales"], summary["importance"]["fanova"]
    if gp or fanova:
        lines += ["", f"{'factor':<11} {'GP length scale':>16} {'fANOVA':>8}   (short length scale = matters)"]
        for f in FACTORS:
            ls = f"{gp[f]:.3f}" if gp else "-"
            fa = f"{fanova.get(f, 0):.3f}" if fanova else "-"
            lines.append(f"{f:<11} {ls:>16} {fa:>8}")
    if summary["formula"]:
        f = summary["formula"]
        lines += ["", "scaling formula (from the GP's downsizing path):",
                  formula_text(f["base"], f["base_macs"], f["exponents"])]
    return "\n".join(lines)

