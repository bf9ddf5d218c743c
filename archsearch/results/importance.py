"""How much each factor matters, measured as a share of variance.

Two estimates, side by side, because they see different evidence:

* **Variance shares of the GP mean** (top rung), exact on the space's grid (for v1 the variant is an axis too),
  every grid point weighing the same: first-order Sobol ``S_i = Var(E[f | x_i]) / Var(f)`` (the factor
  alone), total ``ST_i = E[Var(f | x_~i)] / Var(f)`` (with all its interactions), and Shapley effects (each
  factor's average gain in explained variance over the orders in which factors can be added; they sum to 1
  and lie between ``S_i`` and ``ST_i`` on a product grid). With a ``budget`` the same quantities are taken
  over the grid points within it. That set is not a product: the factors become dependent (within 300M,
  wider means lower resolution), ``S_i`` is then the correlation ratio, ``ST_i`` can fall below ``S_i``, and
  a factor gets credit only for the variation the budget leaves it. Shapley effects stay well defined under
  dependence (Owen 2014; Song, Nelson and Staum 2016), so they are what ``ranking`` uses. Restricting to the
  budget keeps the GP where a study's evidence is; over the whole grid the GP mostly extrapolates.
* **fANOVA over the trials** (Optuna's random-forest fANOVA): variance shares of a forest fitted to the trained
  configs' accuracies, with no GP in between.

The GP's ARD length scales are reported beside them, labelled as length scales: a short length scale says the
surface changes fast along a factor, not that the factor moves accuracy much (a factor may wiggle within a
small range), so they rank factors by something other than importance.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from ..gp.surrogate import GPSurrogate
from ..model.cost import closed_form_cost
from ..model.space import FACTORS


@dataclass(frozen=True)
class Importance:
    """Variance shares per factor (``variant`` too for v1), and the GP's length scales, which are not one."""

    sobol_first: dict[str, float] | None  # S_i of the GP mean; None without a GP or on a flat mean
    sobol_total: dict[str, float] | None  # ST_i
    shapley: dict[str, float] | None  # Shapley effects of the GP mean: sum to 1, well defined under a budget
    fanova: dict[str, float] | None  # Optuna's fANOVA over the trials; None with < 3 trials or equal accuracies
    lengthscales: dict[str, float] | None  # ARD length scales (fractions of each factor's range)
    budget: int | None  # the GP indices are over the grid points within this budget (None: the whole grid)
    grid_points: int  # how many grid points they are over

    def ranking(self) -> list[str]:
        """Factors by Shapley effect of the GP mean (by fANOVA without a GP), most important first."""
        scores = self.shapley or self.fanova or {}
        return sorted(scores, key=lambda f: -scores[f])

    def to_dict(self) -> dict:
        return {"sobol_first": self.sobol_first, "sobol_total": self.sobol_total, "shapley": self.shapley,
                "fanova": self.fanova, "gp_lengthscales": self.lengthscales, "budget": self.budget,
                "grid_points": self.grid_points}

    def describe(self) -> str:
        return importance_text(self.to_dict())


def importance_text(importance: dict) -> str:
    """Importance as ``Importance.to_dict`` stores it (e.g. in summary.json), as a table with a legend."""
    columns = {"Sobol first": importance["sobol_first"], "Sobol total": importance["sobol_total"],
               "Shapley": importance["shapley"], "fANOVA": importance["fanova"],
               "GP length scale": importance["gp_lengthscales"]}
    names = list(importance["gp_lengthscales"] or dict.fromkeys([*FACTORS, *(importance["fanova"] or {})]))
    lines = [f"{'factor':<11}" + "".join(f" {c:>{max(8, len(c))}}" for c in columns)]
    for name in names:
        lines.append(f"{name:<11}" + "".join(f" {f'{d[name]:.3f}' if d and name in d else '-':>{max(8, len(c))}}"
                                             for c, d in columns.items()))
    if importance["sobol_first"] is not None:
        budget, points = importance["budget"], importance["grid_points"]
        where = f"the {points} grid points within {budget / 1e6:.0f}M MACs" if budget else f"all {points} grid points"
        lines.append(f"Sobol and Shapley: shares of the GP mean's variance over {where} (first: the factor alone; "
                     "total: with its interactions).")
    if importance["fanova"] is not None:
        lines.append("fANOVA: variance shares of a random forest over the trials.")
    if importance["gp_lengthscales"] is not None:
        lines.append("GP length scale: how fast the GP mean changes along a factor (short = fast); not an "
                     "importance.")
    return "\n".join(lines)


def factor_importance(surrogate: GPSurrogate | None, trials: Sequence[FrozenTrial] = (), seed: int = 0,
                      budget: int | None = None) -> Importance:
    """Sobol indices and Shapley effects of ``surrogate``'s mean over its space's grid (the points within
    ``budget`` if given), fANOVA over the trained ``trials`` (each with ``user_attrs["accuracy"]``), and the GP's
    length scales."""
    shares: tuple[dict[str, float] | None, ...] = (None, None, None)
    lengthscales, points = None, 0
    if surrogate is not None:
        lengthscales = surrogate.lengthscales()  # keyed by the encoded axes: the factors, plus variant for v1
        grid = list(surrogate.space.grid())
        if budget is not None:
            grid = [c for c in grid if closed_form_cost(c).macs <= budget]
        points = len(grid)
        found = variance_shares(surrogate.space.encode(grid), surrogate.predict(grid)[0]) if grid else None
        if found is not None:
            shares = tuple({n: float(v) for n, v in zip(lengthscales, row)} for row in found)
    return Importance(*shares, fanova_importance(trials, seed), lengthscales, budget, points)


def variance_shares(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """First-order and total Sobol indices and Shapley effects of ``values`` over the equally weighted ``points``
    ([n, d] coordinates), exactly, from the closed indices ``c(S) = Var(E[f | x_S]) / Var(f)`` of every subset
    ``S`` of the axes (conditional means by grouping equal coordinates); None when ``values`` do not vary.

    ``S_i = c({i})``; ``ST_i = 1 - c(~i)`` (law of total variance); Shapley ``Sh_i``: the average of
    ``c(S + i) - c(S)`` over the orders in which the axes can be added.
    """
    values = np.asarray(values, dtype=np.float64)
    variance = values.var()
    if not variance > 1e-12 * max(1.0, float(np.abs(values).max())) ** 2:
        return None
    d = points.shape[1]
    closed = {(): 0.0}
    for size in range(1, d + 1):
        for axes in itertools.combinations(range(d), size):
            _, group = np.unique(points[:, axes], axis=0, return_inverse=True)
            group = group.reshape(-1)
            means = np.bincount(group, values) / np.bincount(group)
            closed[axes] = float(means[group].var() / variance)
    first = np.array([closed[(i,)] for i in range(d)])
    total = np.array([1.0 - closed[tuple(j for j in range(d) if j != i)] for i in range(d)])
    shapley = np.zeros(d)
    for axes, share in closed.items():
        for i in set(range(d)) - set(axes):
            weight = 1.0 / (d * math.comb(d - 1, len(axes)))
            shapley[i] += weight * (closed[tuple(sorted((*axes, i)))] - share)
    return tuple(np.clip(a, 0.0, 1.0) for a in (first, total, shapley))


def fanova_importance(trials: Sequence[FrozenTrial], seed: int = 0) -> dict[str, float] | None:
    """Optuna's fANOVA of accuracy over the trained ``trials``; None with fewer than 3 or equal accuracies."""
    trials = list(trials)
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
    return {k: round(float(v), 4) for k, v in importance.items()}
