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

**Only where the evidence carries it.** A GP fitted to noise still has a factor its mean varies most along,
so the GP's ranking is checked twice, and declined, in words, when either check fails:

* **Intervals.** Every GP share gets a 95 % interval: the same index of ``draws`` joint posterior draws of the
  surface over the same grid points (up to ``MAX_DRAW_POINTS`` of them: a draw costs a Cholesky of the
  points). It is the share of a drawn surface, so it carries the GP's uncertainty; a draw is rougher than
  the mean, so the mean's share can lie outside it. The ranking is declined when the top factor's Shapley
  interval overlaps another factor's.
* **Permutation test** (``permutation``). The statistic is the top factor's Shapley effect on the GP mean, as
  a standard deviation in accuracy units (``sqrt(Sh_top * Var(mean))``): how much of the mean's variation
  over the grid points the top factor accounts for. Shares alone do not tell signal from noise -- on the
  smoke table (20 and 60 configs at 300M and 600M) GPs fitted to shuffled accuracies gave top shares as
  high as the real ones -- but such a GP reverts to the mean between the configs, so its top factor moves
  the mean less (there: 0.32 of the accuracies' variance for the real top factor, at most 0.22 and 0.15
  for shuffled ones). The same GP fitted to
  the accuracies shuffled across configs gives the null distribution; the ranking is declined when ``p``
  exceeds ``ALPHA``.
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
from ..model.config import ArchConfig
from ..model.cost import closed_form_cost
from ..model.space import FACTORS
from .permutation import PermutationTest, default_shuffles, shuffled_fits

DRAWS = 256  # joint posterior draws for the intervals
MAX_DRAW_POINTS = 5000  # no intervals above this many grid points (a whole grid): joint draws cost too much
MEASURES = ("sobol_first", "sobol_total", "shapley")
DECLINED = "importance declined: "
TOP_EFFECT = ("the top factor's Shapley effect on the GP mean over the grid points, as a standard deviation "
              "in accuracy units")


@dataclass(frozen=True)
class Importance:
    """Variance shares per factor (``variant`` too for v1) with their intervals, the GP's length scales (which
    are not one), and whether the evidence carries the GP's ranking."""

    sobol_first: dict[str, float] | None  # S_i of the GP mean; None without a GP or on a flat mean
    sobol_total: dict[str, float] | None  # ST_i
    shapley: dict[str, float] | None  # Shapley effects of the GP mean: sum to 1, well defined under a budget
    fanova: dict[str, float] | None  # Optuna's fANOVA over the trials; None with < 3 trials or equal accuracies
    lengthscales: dict[str, float] | None  # ARD length scales (fractions of each factor's range)
    budget: int | None  # the GP indices are over the grid points within this budget (None: the whole grid)
    grid_points: int  # how many grid points they are over
    # 95 % intervals over posterior draws, by measure (MEASURES) and factor; None without draws
    intervals: dict[str, dict[str, tuple[float, float]]] | None = None
    draws: int = 0  # the posterior draws behind ``intervals``
    permutation: PermutationTest | None = None  # the top factor's effect against shuffled accuracies
    verdict: str | None = None  # in words: the GP's ranking stands or is declined, and why; None untested
    declined: bool = False  # the evidence does not carry the GP's ranking

    def ranking(self) -> list[str]:
        """Factors by Shapley effect of the GP mean (by fANOVA without a GP), most important first; check
        ``declined`` before reading it as evidence."""
        scores = self.shapley or self.fanova or {}
        return sorted(scores, key=lambda f: -scores[f])

    def to_dict(self) -> dict:
        intervals = None if self.intervals is None else {
            m: {f: list(v) for f, v in by_factor.items()} for m, by_factor in self.intervals.items()}
        return {"sobol_first": self.sobol_first, "sobol_total": self.sobol_total, "shapley": self.shapley,
                "fanova": self.fanova, "gp_lengthscales": self.lengthscales, "budget": self.budget,
                "grid_points": self.grid_points, "intervals_95": intervals, "posterior_draws": self.draws,
                "permutation": None if self.permutation is None else self.permutation.to_dict(),
                "verdict": self.verdict, "declined": self.declined}

    def describe(self) -> str:
        return importance_text(self.to_dict())


def importance_text(importance: dict) -> str:
    """Importance as ``Importance.to_dict`` stores it (e.g. in summary.json; older ones without intervals or
    verdict too), as its verdict, a table and a legend."""
    columns = {"Sobol first": importance["sobol_first"], "Sobol total": importance["sobol_total"],
               "Shapley": importance["shapley"], "fANOVA": importance["fanova"],
               "GP length scale": importance["gp_lengthscales"]}
    intervals = importance.get("intervals_95") or {}
    bounds = {"Sobol first": intervals.get("sobol_first"), "Sobol total": intervals.get("sobol_total"),
              "Shapley": intervals.get("shapley")}
    widths = {c: max(8, len(c), 18 if bounds.get(c) else 0) for c in columns}

    def cell(column: str, name: str) -> str:
        values, interval = columns[column], bounds.get(column)
        if not values or name not in values:
            return "-"
        text = f"{values[name]:.3f}"
        return f"{text} [{interval[name][0]:.2f}, {interval[name][1]:.2f}]" if interval and name in interval else text

    names = list(importance["gp_lengthscales"] or dict.fromkeys([*FACTORS, *(importance["fanova"] or {})]))
    lines = [importance["verdict"]] if importance.get("verdict") else []
    lines.append(f"{'factor':<11}" + "".join(f" {c:>{widths[c]}}" for c in columns))
    for name in names:
        lines.append(f"{name:<11}" + "".join(f" {cell(c, name):>{widths[c]}}" for c in columns))
    if importance["sobol_first"] is not None:
        budget, points = importance["budget"], importance["grid_points"]
        where = f"the {points} grid points within {budget / 1e6:.0f}M MACs" if budget else f"all {points} grid points"
        lines.append(f"Sobol and Shapley: shares of the GP mean's variance over {where} (first: the factor alone; "
                     "total: with its interactions).")
        if intervals:
            lines.append(f"[low, high]: 95 % interval of the same share over {importance['posterior_draws']} joint GP "
                         "posterior draws of the surface (a draw is rougher than the mean: the mean's share can lie "
                         "outside).")
    if importance["fanova"] is not None:
        lines.append("fANOVA: variance shares of a random forest over the trials (no interval, not tested).")
    if importance["gp_lengthscales"] is not None:
        lines.append("GP length scale: how fast the GP mean changes along a factor (short = fast); not an "
                     "importance.")
    return "\n".join(lines)


def factor_importance(surrogate: GPSurrogate | None, trials: Sequence[FrozenTrial] = (), seed: int = 0,
                      budget: int | None = None, draws: int = DRAWS, shuffles: int | None = None) -> Importance:
    """Sobol indices and Shapley effects of ``surrogate``'s mean over its space's grid (the points within
    ``budget`` if given), with 95 % intervals over ``draws`` posterior draws and a permutation test over
    ``shuffles`` refits (None: ``default_shuffles()``; 0 skips it), fANOVA over the trained ``trials`` (each
    with ``user_attrs["accuracy"]``), and the GP's length scales."""
    shares: tuple[dict[str, float] | None, ...] = (None, None, None)
    lengthscales, points, intervals, test, verdict, declined = None, 0, None, None, None, False
    if surrogate is not None:
        lengthscales = surrogate.lengthscales()  # keyed by the encoded axes: the factors, plus variant for v1
        names = list(lengthscales)
        grid = list(surrogate.space.grid())
        if budget is not None:
            grid = [c for c in grid if closed_form_cost(c).macs <= budget]
        points = len(grid)
        x = surrogate.space.encode(grid) if grid else None
        mean = surrogate.predict(grid)[0] if grid else None
        found = variance_shares(x, mean) if grid else None
        if found is not None:
            shares = tuple({n: float(v) for n, v in zip(names, row)} for row in found)
            if points > MAX_DRAW_POINTS:  # a Cholesky of the points, n^3: 12 s already at v2's whole grid (5880)
                draws = 0
            intervals = _intervals(surrogate, grid, x, names, draws, seed) if draws else None
            shuffles = default_shuffles() if shuffles is None else shuffles
            if shuffles:
                means = np.stack([mean] + [s.predict(grid)[0] for s in shuffled_fits(surrogate, shuffles, seed)])
                effects = top_effects(x, means)
                test = PermutationTest(TOP_EFFECT, float(effects[0]), tuple(map(float, effects[1:])), seed)
            verdict, declined = _verdict(shares[2], intervals, test, points)
    return Importance(*shares, fanova_importance(trials, seed), lengthscales, budget, points, intervals,
                      draws if intervals else 0, test, verdict, declined)


def top_effects(points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The permutation statistic of each row of ``values`` ([k, n]): ``sqrt(Sh_top * Var(row))``, the spread over
    ``points`` that the row's top factor accounts for (Shapley), in the values' units; 0 for a flat row."""
    shapley = share_draws(points, values)[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a flat row is all NaN
        top = np.nan_to_num(np.nanmax(shapley, axis=1))
    return np.sqrt(top * np.asarray(values, dtype=np.float64).var(axis=1))


def _intervals(surrogate: GPSurrogate, grid: list[ArchConfig], x: np.ndarray, names: list[str], draws: int,
               seed: int) -> dict[str, dict[str, tuple[float, float]]] | None:
    """95 % intervals of every GP share over ``draws`` joint posterior draws of the surface on ``grid``."""
    found = share_draws(x, surrogate.sample_posterior(grid, draws, seed=seed))
    if np.isnan(found[0]).all():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column that is all NaN
        bounds = [np.nanquantile(a, (0.025, 0.975), axis=0) for a in found]
    return {m: {n: (float(b[0, i]), float(b[1, i])) for i, n in enumerate(names)} for m, b in zip(MEASURES, bounds)}


def _verdict(shapley: dict[str, float], intervals: dict | None, test: PermutationTest | None,
             points: int) -> tuple[str | None, bool]:
    """Whether the evidence carries the GP's ranking, in words (None when neither check ran), and whether it is
    declined."""
    if intervals is None and test is None:
        return None, False
    top = max(shapley, key=shapley.get)
    reasons, checks = [], []
    if test is not None:
        said = (f"p = {test.p_value:.2g} over {test.shuffles} shuffles: {top} accounts for {100 * test.observed:.1f} "
                f"points of the GP mean's spread, the shuffled fits' top factors for up to "
                f"{100 * max(test.shuffled):.1f}")
        if test.passed:
            checks.append(f"GPs fitted to the accuracies shuffled across configs give no top factor as strong ({said})")
        else:
            reasons.append(f"GPs fitted to the accuracies shuffled across configs give a top factor as strong ({said})")
    if intervals is not None and len(shapley) > 1:
        share = intervals["shapley"]
        rival = max((f for f in shapley if f != top), key=lambda f: share[f][1])
        ours, theirs = (f"[{share[f][0]:.2f}, {share[f][1]:.2f}]" for f in (top, rival))
        if share[top][0] > share[rival][1]:
            checks.append(f"{top}'s Shapley share {ours} lies above every other factor's (the highest: {rival}'s "
                          f"{theirs}; 95 % over posterior draws)")
        else:
            reasons.append(f"{top}'s Shapley share {ours} overlaps {rival}'s {theirs} (95 % over posterior draws)")
    elif points > MAX_DRAW_POINTS:
        checks.append(f"no interval: {points} grid points are too many for joint posterior draws")
    if reasons:
        return DECLINED + "; and ".join(reasons) + (". Passed: " + "; ".join(checks) if checks else ""), True
    return f"importance: {top} ranks first; " + "; ".join(checks), False


def variance_shares(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """First-order and total Sobol indices and Shapley effects of ``values`` over the equally weighted ``points``
    ([n, d] coordinates), exactly, from the closed indices ``c(S) = Var(E[f | x_S]) / Var(f)`` of every subset
    ``S`` of the axes (conditional means by grouping equal coordinates); None when ``values`` do not vary.

    ``S_i = c({i})``; ``ST_i = 1 - c(~i)`` (law of total variance); Shapley ``Sh_i``: the average of
    ``c(S + i) - c(S)`` over the orders in which the axes can be added.
    """
    found = share_draws(points, np.asarray(values, dtype=np.float64).reshape(1, -1))
    return None if np.isnan(found[0]).all() else tuple(a[0] for a in found)


def share_draws(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
    """``variance_shares`` of each row of ``values`` ([k, n], e.g. posterior draws) at once: first, total and
    Shapley, each [k, d]; a row that does not vary is NaN. The groupings depend on the points only, so they are
    found once."""
    values = np.asarray(values, dtype=np.float64)
    k, n = values.shape
    d = points.shape[1]
    variance = values.var(axis=1)
    flat = ~(variance > 1e-12 * np.maximum(1.0, np.abs(values).max(axis=1, initial=0.0)) ** 2)
    centred = values - values.mean(axis=1, keepdims=True)
    closed = {(): np.zeros(k)}
    for size in range(1, d + 1):
        for axes in itertools.combinations(range(d), size):
            _, group = np.unique(points[:, axes], axis=0, return_inverse=True)
            order = np.argsort(group.reshape(-1), kind="stable")
            counts = np.bincount(group.reshape(-1))
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            means = np.add.reduceat(centred[:, order], starts, axis=1) / counts  # [k, groups]
            with np.errstate(divide="ignore", invalid="ignore"):
                closed[axes] = (means**2 @ counts) / n / variance
    first = np.stack([closed[(i,)] for i in range(d)], axis=1)
    total = np.stack([1.0 - closed[tuple(j for j in range(d) if j != i)] for i in range(d)], axis=1)
    shapley = np.zeros((k, d))
    for axes, share in closed.items():
        for i in set(range(d)) - set(axes):
            weight = 1.0 / (d * math.comb(d - 1, len(axes)))
            shapley[:, i] += weight * (closed[tuple(sorted((*axes, i)))] - share)
    out = tuple(np.clip(a, 0.0, 1.0) for a in (first, total, shapley))
    for a in out:
        a[flat] = np.nan
    return out


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
