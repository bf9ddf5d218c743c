"""Factor importance (interim: ARD length scales and Optuna's fANOVA; variance-based indices come next)."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from .space import FACTORS
from .study import trained_trials


def fanova_importance(study: optuna.Study, seed: int = 0) -> dict[str, float] | None:
    trials = [t for t in trained_trials(study) if t.params]
    if len(trials) < 3 or len({t.user_attrs["accuracy"] for t in trials}) < 2:
        return None
    view = optuna.create_study(directions=["maximize"])
    for t in trials:
        view.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                 value=t.user_attrs["accuracy"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importance = optuna.importance.get_param_importances(
            view, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    return {k: round(v, 4) for k, v in importance.items()}


def importance_report(study: optuna.Study, surrogate, space, seed: int = 0) -> dict[str, Any]:
    return {"gp_lengthscales": surrogate.lengthscales() if surrogate else None,
            "fanova": fanova_importance(study, seed)}


def render_importance(importance: dict[str, Any]) -> list[str]:
    gp, fanova = importance["gp_lengthscales"], importance["fanova"]
    if not (gp or fanova):
        return []
    lines = [f"{'factor':<11} {'GP length scale':>16} {'fANOVA':>8}"]
    for f in FACTORS:
        lines.append(f"{f:<11} {(f'{gp[f]:.3f}' if gp else '-'):>16} {(f'{fanova.get(f, 0):.3f}' if fanova else '-'):>8}")
    return lines
