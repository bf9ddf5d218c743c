"""The scaling formula: how each factor grows with the MAC budget, fitted where the study has evidence.

A study trains configs near its budget, so the GP knows which configs are good only over the MAC range those
configs span; elsewhere it is at its prior, and a formula read from it there describes the cost model, not the
data. So the formula is fitted over that range and nowhere else:

* **Levels.** ``N_LEVELS`` MAC levels, log-spaced from the cheapest trained config to the budget (to the
  dearest trained config if none costs ``WINDOW`` of the budget or more), or the levels given (a multi-budget
  study's budgets: the law is then read where each budget's networks were trained, not between them); a
  level counts only if its window ``[WINDOW * level, level]`` holds a trained config.
* **Best per level, per posterior draw.** The candidates are the distinct networks in the levels' windows
  within ``NEAR`` ARD length scales of a trained config. Joint GP posterior draws over all of them give, per
  draw, the best candidate at each level: the uncertainty about *which* config is best, the quantity the
  formula is about, is carried through.
* **Fit.** Per draw and factor, least squares of ``log factor = log f_B + e * log(MACs / budget)`` across the
  levels (MACs of the chosen configs). An exponent is reported as its median and 90 % interval over the
  draws, ``f_B`` (the factor at the budget) as its median.

**Declining.** Without data, the same procedure with a uniformly random pick per level (a "blind pick") still
gives exponents, set by how MACs grow with each factor: that is what a formula reports when the accuracies say
nothing (shuffled or random ones). A factor's *relative width* is its exponent's 90 % interval width over the
blind pick's (floored at 0.01; 1 where the blind pick cannot vary it either); the formula's is the geometric
mean over the factors. The formula declines, saying why, when fewer than ``MIN_TRAINED`` distinct configs were
trained, when they span less than a factor ``MIN_SPAN`` of MACs, when fewer than ``MIN_LEVELS`` levels hold
evidence, or when its relative width exceeds ``MAX_RELATIVE_WIDTH``: the data then hardly narrow the exponents
beyond what the MAC structure alone allows. (The threshold: on the smoke table at 300M and 600M, 24 studies
with shuffled or random accuracies gave 0.43-1.36, the real accuracies 0.19 and 0.30.)

**Permutation test** (``permutation``). A formula that passes the threshold is then set against the same GP
(same class and settings) refitted to the study's accuracies shuffled across configs, ``shuffles`` times:
each refit goes through the same levels, candidates and draws, and its relative width is compared. When
shuffled accuracies give a formula as narrow often enough that ``p`` exceeds ``ALPHA``, the data did not
narrow it -- the MAC structure and the GP's smoothness did -- and the formula declines, saying so.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..gp.surrogate import GPSurrogate
from ..model.config import ArchConfig
from ..model.cost import closed_form_cost, distinct_networks
from ..model.space import FACTORS, FactorSpace
from .permutation import PermutationTest, default_shuffles, shuffled_fits

MIN_TRAINED = 6  # distinct trained networks
MIN_SPAN = 1.5  # dearest / cheapest level
MIN_LEVELS = 3
N_LEVELS = 6
WINDOW = 0.7  # a level's candidates cost between WINDOW * level and level
NEAR = 1.0  # candidates within this many ARD length scales (scaled Euclidean distance) of a trained config
MAX_RELATIVE_WIDTH = 0.35  # decline above: exponent intervals barely narrower than a blind pick's
QUANTILES = (0.05, 0.5, 0.95)
RELATIVE_WIDTH = "the formula's relative width: its exponents' 90 % intervals over a blind pick's (geometric mean)"


@dataclass(frozen=True)
class FactorLaw:
    """``value = at_budget * (MACs / budget) ** exponent``; the exponent's 90 % interval over the posterior
    draws and under a blind pick (the spread the MAC structure alone allows)."""

    factor: str
    at_budget: float
    exponent: float
    interval: tuple[float, float]
    blind_interval: tuple[float, float]
    permutation: PermutationTest | None = None  # this factor's own test, where the fit gives one

    @property
    def relative_width(self) -> float:
        """The exponent's interval width over the blind pick's: how far the data narrow it (small = far)."""
        width, blind = self.interval[1] - self.interval[0], self.blind_interval[1] - self.blind_interval[0]
        return max(width / blind, 0.01) if blind > 0 else 1.0

    @property
    def carried(self) -> bool:
        """The evidence carries this factor's law: narrow against a blind pick, and its own test (if any) passed."""
        return self.relative_width <= MAX_RELATIVE_WIDTH and (self.permutation is None or self.permutation.passed)

    def to_dict(self) -> dict:
        return {"at_budget": self.at_budget, "exponent": self.exponent, "interval_90": list(self.interval),
                "blind_interval_90": list(self.blind_interval), "relative_width": self.relative_width,
                "carried": self.carried,
                "permutation": None if self.permutation is None else self.permutation.to_dict()}


@dataclass(frozen=True)
class Level:
    """One MAC level of the fit: the candidate that was best in most draws, and in what share of them."""

    macs: int
    best: ArchConfig
    best_macs: int
    share: float

    def to_dict(self) -> dict:
        return {"macs": self.macs, "best": self.best.id, "best_macs": self.best_macs, "share": self.share}


@dataclass(frozen=True)
class ScalingFormula:
    budget: int
    macs_range: tuple[int, int]  # fitted on this MAC range; outside it the formula extrapolates
    laws: tuple[FactorLaw, ...]  # in FACTORS order
    levels: tuple[Level, ...]
    variant: str | None  # v1: the base variant the formula scales
    trained: int
    samples: int
    declined: bool = False
    permutation: PermutationTest | None = None  # the relative width against shuffled accuracies (None: untested)
    source: str = "GP posterior draws"  # what the exponents' draws are
    null: str = "GPs fitted to the accuracies shuffled across configs"  # what the permutation test refits

    def raw_factors(self, budget: int) -> dict[str, float]:
        """The formula's factor values at ``budget`` (between grid values)."""
        return {law.factor: law.at_budget * (budget / self.budget) ** law.exponent for law in self.laws}

    @property
    def relative_width(self) -> float:
        """Geometric mean of the factors' relative widths: how far the data narrow the exponents overall."""
        return _relative_width(self.laws)

    def covers(self, budget: int) -> bool:
        return self.macs_range[0] <= budget <= self.macs_range[1]

    def describe(self) -> str:
        return formula_text(self.to_dict())

    def to_dict(self) -> dict:
        return {"declined": False, "reason": None, "budget": self.budget, "macs_range": list(self.macs_range),
                "variant": self.variant, "trained": self.trained, "samples": self.samples, "source": self.source,
                "null": self.null,
                "relative_width": self.relative_width, "factors": {law.factor: law.to_dict() for law in self.laws},
                "levels": [level.to_dict() for level in self.levels],
                "permutation": None if self.permutation is None else self.permutation.to_dict()}


@dataclass(frozen=True)
class FormulaDeclined:
    """No formula: the evidence does not support one; ``reason`` says why. ``fitted``: the law as fitted
    before it was declined, where there was one (its factors may still carry their own laws)."""

    budget: int
    reason: str
    declined: bool = True
    permutation: PermutationTest | None = None  # the test that declined it, if one did
    fitted: ScalingFormula | None = None

    def describe(self) -> str:
        return formula_text(self.to_dict())

    def to_dict(self) -> dict:
        return {"declined": True, "reason": self.reason, "budget": self.budget,
                "permutation": None if self.permutation is None else self.permutation.to_dict(),
                "fitted": None if self.fitted is None else self.fitted.to_dict()}


class FormulaPick(NamedTuple):
    """The grid config a formula gives for a budget, with the GP's prediction there."""

    config: ArchConfig
    macs: int
    mean: float
    std: float
    extrapolated: bool  # the budget lies outside the MAC range the formula was fitted on


class _Fit(NamedTuple):
    """What one GP's draws give: the laws, each draw's best candidate per level ``[draws, levels]``, the
    candidates and their MACs, the levels that hold candidates, the variant."""

    laws: tuple[FactorLaw, ...]
    best: np.ndarray
    configs: list[ArchConfig]
    costs: np.ndarray
    levels: list[float]
    variant: str | None


def formula_text(formula: dict) -> str:
    """A formula as ``to_dict`` stores it (e.g. in summary.json), as text: one line per factor,
    ``width = 0.75 * (MACs / 300M)^0.41 [0.22, 0.58]``, or why there is none."""
    if formula["declined"]:
        return f"no scaling formula: {formula['reason']}"
    lo, hi = formula["macs_range"]
    variant = f", variant {formula['variant']}" if formula["variant"] else ""
    source = formula.get("source", "GP posterior draws")
    lines = [(f"scaling formula fitted on {_m(lo)}-{_m(hi)} MACs ({len(formula['levels'])} levels, "
              f"{formula['trained']} trained configs{variant}); exponents: median [90 % interval] over "
              f"{formula['samples']} {source}; the intervals are {formula['relative_width']:.2f} x as wide "
              "as a blind pick's (geometric mean)")]
    for factor, law in formula["factors"].items():
        low, high = law["interval_90"]
        own = law.get("permutation")
        tested = f", p = {own['p_value']:.2g}" if own else ""
        lines.append(f"  {factor:<10} = {law['at_budget']:.3g} * (MACs / {_m(formula['budget'])})^"
                     f"{law['exponent']:.2f} [{low:.2f}, {high:.2f}]  ({law['relative_width']:.2f} x a blind pick's"
                     f"{tested})")
    test = formula.get("permutation")
    if test:
        null = formula.get("null", "GPs fitted to the accuracies shuffled across configs")
        lines.append(f"tested: {null} gave a formula as narrow in "
                     f"{test['as_extreme']} of {test['shuffles']} shuffles (p = {test['p_value']:.2g})")
    return "\n".join(lines)


def derive_formula(surrogate: GPSurrogate, space: FactorSpace, trained: Sequence[tuple[ArchConfig, int]],
                   budget: int, seed: int = 0, n_samples: int = 256, shuffles: int | None = None,
                   levels: Sequence[float] | None = None) -> ScalingFormula | FormulaDeclined:
    """The scaling formula over the MAC range of the ``trained`` (config, MACs) pairs, or why there is none;
    tested against ``shuffles`` refits to shuffled accuracies (None: ``default_shuffles()``; 0 skips it).

    ``levels``: fit at these MAC levels (a family's budgets) instead of ``N_LEVELS`` log-spaced ones; ``budget``
    is then only the law's reference (pass the largest level)."""
    trained = list({c.network_key(): (c, m) for c, m in trained}.values())
    if levels is not None and len(set(levels)) < MIN_LEVELS:
        return FormulaDeclined(budget, f"the evidence is too thin: {len(set(levels))} MAC levels (budgets) given, "
                                       f"a formula needs {MIN_LEVELS}")
    if len(trained) < MIN_TRAINED:
        return FormulaDeclined(budget, f"the evidence is too thin: {len(trained)} distinct trained configs, "
                                       f"a formula needs {MIN_TRAINED}")
    macs = np.array([m for _, m in trained], dtype=np.float64)
    if levels is None:
        lo = macs.min()
        hi = float(budget) if macs.max() >= WINDOW * budget else min(macs.max(), budget)
        grid = np.geomspace(lo, hi, N_LEVELS)
    else:
        grid = np.array(sorted(set(levels)), dtype=np.float64)
        lo, hi = float(grid[0]), float(grid[-1])
    if hi < MIN_SPAN * lo:
        spanned = "the trained configs span" if levels is None else "the levels (budgets) span"
        upto = " (up to the budget)" if levels is None else ""
        return FormulaDeclined(budget, f"{spanned} only {_m(lo)}-{_m(hi)} MACs{upto}; a formula needs a factor "
                                       f"{MIN_SPAN:g}")
    evidence = [lv for lv in grid if np.any((macs >= WINDOW * lv) & (macs <= lv * (1 + 1e-9)))]
    configs = [c for c, _ in trained]
    fit = _fit_laws(surrogate, space, configs, evidence, lo, hi, budget, seed, n_samples)
    if isinstance(fit, str):
        return FormulaDeclined(budget, fit)
    width = _relative_width(fit.laws)
    if width > MAX_RELATIVE_WIDTH:
        widths = ", ".join(f"{law.factor} {law.relative_width:.2f}" for law in fit.laws)
        return FormulaDeclined(budget, "the evidence is too thin: the GP's draws narrow the exponents little beyond "
                                       f"a blind pick of configs (90 % intervals {width:.2f} x as "
                                       f"wide, geometric mean, above {MAX_RELATIVE_WIDTH:g}; {widths})")
    shuffles = default_shuffles() if shuffles is None else shuffles
    test = None
    if shuffles:  # the same procedure on each shuffled fit; one with too few levels is no formula: infinitely wide
        null = [_fit_laws(other, space, configs, evidence, lo, hi, budget, seed, n_samples)
                for other in shuffled_fits(surrogate, shuffles, seed)]
        test = PermutationTest(RELATIVE_WIDTH, width, tuple(math.inf if isinstance(f, str) else _relative_width(f.laws)
                                                            for f in null), seed, smaller_is_extreme=True)
        if not test.passed:
            return FormulaDeclined(budget, "the evidence is too thin: GPs fitted to the accuracies shuffled across "
                                           f"configs give a formula as narrow in {test.as_extreme} of {test.shuffles} "
                                           f"shuffles (p = {test.p_value:.2g}; relative width {width:.2f}, the "
                                           f"narrowest shuffled one {min(test.shuffled):.2f})", permutation=test)
    return ScalingFormula(budget, (round(fit.levels[0]), round(fit.levels[-1])), fit.laws,
                          tuple(_level(lv, fit.best[:, k], fit.configs, fit.costs) for k, lv in enumerate(fit.levels)),
                          fit.variant, len(trained), n_samples, permutation=test)


def _fit_laws(surrogate: GPSurrogate, space: FactorSpace, trained: list[ArchConfig], levels: list[float],
              lo: float, hi: float, budget: int, seed: int, n_samples: int) -> _Fit | str:
    """The laws ``surrogate``'s draws give over ``levels`` (with the draws' best candidates, the candidates,
    their MACs, the levels that hold candidates and the variant), or why there are too few levels."""
    variant = _variant(surrogate, space, hi)
    configs, costs = _candidates(surrogate, space, trained, variant, WINDOW * lo, hi)
    masks = [(costs >= WINDOW * lv) & (costs <= lv * (1 + 1e-9)) for lv in levels]
    levels, windows = [lv for lv, w in zip(levels, masks) if w.any()], [w for w in masks if w.any()]
    if len(levels) < MIN_LEVELS:
        return (f"the evidence is too thin: only {len(levels)} MAC levels between {_m(lo)} and {_m(hi)} hold "
                "trained configs (and candidates near them)")
    logs = np.log([[getattr(c, f) for f in FACTORS] for c in configs])
    draws = surrogate.sample_posterior(configs, n_samples, seed=seed)  # [draws, candidates]
    slope, intercept, best = _fit(draws, windows, costs, logs, budget)
    blind, _, _ = _fit(np.random.default_rng(seed).standard_normal(draws.shape), windows, costs, logs, budget)
    q, qb = np.quantile(slope, QUANTILES, axis=0), np.quantile(blind, QUANTILES, axis=0)  # [3, factors]
    laws = tuple(FactorLaw(f, float(np.median(np.exp(intercept[:, i]))), float(q[1, i]),
                           (float(q[0, i]), float(q[2, i])), (float(qb[0, i]), float(qb[2, i])))
                 for i, f in enumerate(FACTORS))
    return _Fit(laws, best, configs, costs, levels, variant)


def _relative_width(laws: Sequence[FactorLaw]) -> float:
    return float(np.exp(np.mean([np.log(law.relative_width) for law in laws])))


@functools.lru_cache(maxsize=4)
def _networks(space: FactorSpace) -> tuple[tuple[ArchConfig, int], ...]:
    return tuple(distinct_networks(space))


def _variant(surrogate: GPSurrogate, space: FactorSpace, top: float) -> str | None:
    """v1: the variant of the config with the highest posterior mean in the top level's window."""
    if len(space.variants) == 1:
        return space.variants[0]
    window = [c for c, m in _networks(space) if WINDOW * top <= m <= top]
    mean, _ = surrogate.predict(window)
    return window[int(np.argmax(mean))].variant


def _candidates(surrogate: GPSurrogate, space: FactorSpace, trained: list[ArchConfig], variant: str | None,
                low: float, high: float) -> tuple[list[ArchConfig], np.ndarray]:
    """Distinct networks of ``variant`` with MACs in [low, high] within ``NEAR`` length scales of the evidence."""
    pairs = [(c, m) for c, m in _networks(space) if low <= m <= high * (1 + 1e-9) and c.variant == variant]
    scale = np.array(list(surrogate.lengthscales().values()))
    points, evidence = space.encode([c for c, _ in pairs]) / scale, space.encode(trained) / scale
    distance = np.sqrt(((points[:, None, :] - evidence[None, :, :]) ** 2).sum(-1)).min(1)
    near = [pair for pair, d in zip(pairs, distance) if d <= NEAR]
    return [c for c, _ in near], np.array([m for _, m in near], dtype=np.float64)


def _fit(draws: np.ndarray, windows: list[np.ndarray], costs: np.ndarray, logs: np.ndarray,
         budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per draw: the best candidate in each window ``[draws, levels]``, and per factor the least-squares
    slope and intercept ``[draws, factors]`` of its log value on log(MACs / budget)."""
    best = best_in_windows(draws, windows)
    return (*least_squares(np.log(costs[best] / budget), logs[best]), best)


def best_in_windows(draws: np.ndarray, windows: list[np.ndarray]) -> np.ndarray:
    """Per draw of ``draws`` ``[draws, candidates]``, the candidate scoring highest in each window
    ``[draws, levels]``."""
    return np.stack([np.flatnonzero(w)[np.argmax(draws[:, w], axis=1)] for w in windows], axis=1)


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per draw, the least-squares slope and intercept ``[draws, factors]`` of ``y`` ``[draws, levels,
    factors]`` on ``x`` ``[draws, levels]``."""
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    sxx = (xc**2).sum(1)[:, None]
    slope = (xc[:, :, None] * yc).sum(1) / np.maximum(sxx, 1e-12)
    return slope, y.mean(1) - slope * x.mean(1)[:, None]


def _level(level: float, picks: np.ndarray, configs: list[ArchConfig], costs: np.ndarray) -> Level:
    index, counts = np.unique(picks, return_counts=True)
    i = int(index[np.argmax(counts)])
    return Level(round(level), configs[i], int(costs[i]), float(counts.max() / len(picks)))


def apply_formula(formula: ScalingFormula, budget: int, space: FactorSpace, surrogate: GPSurrogate) -> FormulaPick:
    """The grid config the formula gives for ``budget`` (``nearest_fitting`` of its factors there)."""
    config, macs, mean, std = nearest_fitting(formula.raw_factors(budget), budget, space, surrogate, formula.variant)
    return FormulaPick(config, macs, mean, std, not formula.covers(budget))


def nearest_fitting(raw: dict[str, float], budget: int, space: FactorSpace, surrogate: GPSurrogate,
                    variant: str | None) -> tuple[ArchConfig, int, float, float]:
    """The grid config for factor values ``raw`` that fits ``budget``, with the GP's mean and std there.

    The values fall between grid values. Of the grid configs less than one grid step from them in every
    factor (each factor rounded down or up) that fit the budget, the one with the highest predicted
    accuracy; if none fits, the neighbourhood widens by a step at a time.
    """
    axes = [space.range(f).values() for f in FACTORS]
    positions = [float(np.interp(raw[f], values, range(len(values)))) for f, values in zip(FACTORS, axes)]
    for k in range(1, max(map(len, axes)) + 1):
        options = [[v for i, v in enumerate(values) if abs(i - p) < k] for values, p in zip(axes, positions)]
        configs = [space.config(dict(zip(FACTORS, values)), variant) for values in itertools.product(*options)]
        fitting = [(c, m) for c in configs if (m := closed_form_cost(c).macs) <= budget]
        if fitting:
            mean, std = surrogate.predict([c for c, _ in fitting])
            i = int(np.argmax(mean))
            return fitting[i][0], fitting[i][1], float(mean[i]), float(std[i])
    raise ValueError(f"budget: {_m(budget)} MACs is below every config of the space")


def _m(macs: float) -> str:
    return f"{macs / 1e6:.0f}M"
