"""The law across a family's budgets: one scaling law for a multi-budget study, checked, applied and said.

A multi-budget study trains networks near each of its budgets, so the law is read where that evidence is.

* **From the deciding rung** (``deciding_law``, what a family with a deciding rung uses). The posterior draws
  that give each verdict's P(best) (``selection.draw``: validation images, seeds, bias) say, per draw, which
  deciding network within ``WINDOW`` of each budget is best; each factor of those networks is fitted as a
  power of MACs, per draw, and the fit's own lack of fit is added (the slope moves by its standard error times
  a t with ``levels - 2`` degrees of freedom: four winners that do not lie on a line do not make a sharp law).
  The blind pick is a uniformly random deciding network per budget. The test relabels the networks within
  each budget's window (which shape got which accuracy) ``RELABELINGS`` times: each factor gets its own
  test, and the law as a whole the test of its geometric-mean relative width. A factor is *carried* where it
  is narrow (``MAX_RELATIVE_WIDTH``) and its test passes; the law is declined unless all of it is, but its
  carried factors are still said (``law_statements``).
* **From the GP** (``family_law``, a family without a deciding rung): ``derive_formula`` at the budgets
  themselves (the largest is the law's reference), declined where the evidence is thin and permutation-tested
  as every formula is.

* **Leave one budget out** (``held_out_law``). A law that only restates the networks it was fitted on says
  nothing about a budget nobody searched. So every observation in one budget's band (above the next smaller
  budget, up to that budget) is dropped, the GP is refitted on the rest, the law is derived at the other
  budgets and applied at the dropped one; the caller compares its pick with that budget's own verdict. It
  needs ``MIN_LEVELS`` other budgets to fit at, so ``MIN_LEVELS + 1`` in all. From the deciding rung, the
  band's deciding networks are dropped too, and the refitted GP only snaps the law's factors to the grid.
* **Iterative downsizing** (``downsize``), the seed paper's: from one network at the top, each smaller
  budget's network is the previous one with every factor multiplied by the law's ratio for the step,
  snapped to the grid within the budget (as ``apply_formula`` snaps).
* **In words** (``law_statements``): only what each exponent's 90 % interval carries.
* **EfficientNet's rule** (``efficientnet_exponents``): the exponents its compound coefficients imply, to set
  the fitted law against.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..gp.models import BetaParams
from ..gp.surrogate import GPSurrogate
from ..model.config import ArchConfig
from ..model.cost import closed_form_cost
from ..model.space import FACTORS, FactorSpace
from ..search.baselines import ALPHA, BETA, GAMMA
from ..search.networks import Network
from ..search.noise import Noise
from .formula import (
    MAX_RELATIVE_WIDTH,
    MIN_LEVELS,
    QUANTILES,
    RELATIVE_WIDTH,
    WINDOW,
    FactorLaw,
    FormulaDeclined,
    FormulaPick,
    ScalingFormula,
    _level,
    _m,
    apply_formula,
    best_in_windows,
    derive_formula,
    least_squares,
    nearest_fitting,
)
from .holdout import law_trained
from .permutation import PermutationTest
from .selection import draw

if TYPE_CHECKING:
    from .judge import StudyFacts

FLAT = 0.15  # "stays flat": the exponent's 90 % interval within +-FLAT (under 11 % change per doubling of MACs)

RELABELINGS = 499  # the deciding law's test: relabellings of the networks within each budget's window
RELABELLED = "the networks relabelled within each budget's window"
DECIDING = "posterior draws of the deciding rung's networks (validation images, seeds) with the power law's lack of fit"

Observation = tuple[ArchConfig, int, float, int]  # one job: config, MACs, accuracy, rung


def family_law(surrogate: GPSurrogate, space: FactorSpace, trained: Sequence[tuple[ArchConfig, int]],
               budgets: Sequence[int], seed: int = 0, n_samples: int = 256,
               shuffles: int | None = None) -> ScalingFormula | FormulaDeclined:
    """The law across ``budgets``: the formula fitted at each budget (reference: the largest), or why none."""
    levels = _budgets(budgets)
    return derive_formula(surrogate, space, trained, levels[-1], seed, n_samples, shuffles, levels=levels)


def deciding_law(networks: Sequence[Network], noise: Noise, budgets: Sequence[int], seed: int = 0,
                 relabelings: int = RELABELINGS) -> ScalingFormula | FormulaDeclined:
    """The law from the deciding rung's ``networks`` (all at one rung, with its ``noise``) at ``budgets``, or
    why there is none (then with the law as fitted, whose carried factors still stand)."""
    levels = _budgets(budgets)
    reference = levels[-1]
    networks = _one_variant(list(networks), reference)
    costs = np.array([n.macs for n in networks], dtype=np.float64)
    masks = [(costs >= WINDOW * b) & (costs <= b * (1 + 1e-9)) for b in levels]
    held = [b for b, w in zip(levels, masks) if w.any()]
    if len(held) < MIN_LEVELS:
        return FormulaDeclined(reference, f"the evidence is too thin: {len(held)} of the {len(levels)} budgets have "
                                          f"a deciding-rung network within {WINDOW:g} x of them, the law needs "
                                          f"{MIN_LEVELS}")
    windows = [w for w in masks if w.any()]
    logs = np.log([[getattr(n.config, f) for f in FACTORS] for n in networks])
    accuracy = draw(networks, noise, seed=seed).accuracy  # [draws, networks]
    rng = np.random.default_rng(seed)
    best = best_in_windows(accuracy, windows)  # a relabelling moves networks between columns, not the picks
    slope, intercept = _slopes(best, costs, logs, reference, rng)
    blind, _ = _slopes(best_in_windows(rng.standard_normal(accuracy.shape), windows), costs, logs, reference, rng)
    groups = [np.flatnonzero((np.stack(masks, 1) == row).all(1)) for row in np.unique(np.stack(masks, 1), axis=0)]
    relabelled = []
    for _ in range(relabelings):
        order = np.arange(len(networks))
        for group in groups:
            order[group] = rng.permutation(group)
        relabelled.append(_width(_slopes(best, costs[order], logs[order], reference, rng)[0]))
    null = np.array(relabelled).reshape(relabelings, len(FACTORS))
    q, qb = np.quantile(slope, QUANTILES, axis=0), np.quantile(blind, QUANTILES, axis=0)
    tests = [PermutationTest(f"{f}: the exponent's 90 % interval width", float(q[2, i] - q[0, i]),
                             tuple(map(float, null[:, i])), seed, smaller_is_extreme=True) if relabelings else None
             for i, f in enumerate(FACTORS)]
    laws = tuple(FactorLaw(f, float(np.median(np.exp(intercept[:, i]))), float(q[1, i]), (float(q[0, i]),
                 float(q[2, i])), (float(qb[0, i]), float(qb[2, i])), tests[i]) for i, f in enumerate(FACTORS))
    fitted = ScalingFormula(reference, (held[0], held[-1]), laws, tuple(
        _level(b, best[:, k], [n.config for n in networks], costs) for k, b in enumerate(held)),
        networks[0].config.variant, len(networks), len(accuracy), source=DECIDING,
        null=RELABELLED)
    spans = np.maximum(_width(blind), 1e-12)
    test = PermutationTest(RELATIVE_WIDTH, fitted.relative_width,
                           tuple(float(np.exp(np.log(np.maximum(row / spans, 0.01)).mean())) for row in null), seed,
                           smaller_is_extreme=True) if relabelings else None
    fitted = dataclasses.replace(fitted, permutation=test)
    carried = ", ".join(law.factor for law in laws if law.carried) or "none"
    if fitted.relative_width > MAX_RELATIVE_WIDTH:
        widths = ", ".join(f"{law.factor} {law.relative_width:.2f}" for law in laws)
        return FormulaDeclined(reference, "the evidence is too thin: the deciding rung's draws narrow the exponents "
                                          f"little beyond a blind pick of its networks (90 % intervals "
                                          f"{fitted.relative_width:.2f} x as wide, geometric mean, above "
                                          f"{MAX_RELATIVE_WIDTH:g}; {widths}); factors carried alone: {carried}",
                               permutation=test, fitted=fitted)
    if test is not None and not test.passed:
        return FormulaDeclined(reference, "the evidence is too thin: the networks relabelled within each budget give "
                                          f"a law as narrow in {test.as_extreme} of {test.shuffles} relabellings "
                                          f"(p = {test.p_value:.2g}); factors carried alone: {carried}",
                               permutation=test, fitted=fitted)
    return fitted


def _width(slopes: np.ndarray) -> np.ndarray:
    """Per factor, the 90 % interval width of ``slopes`` ``[draws, factors]``."""
    low, high = np.quantile(slopes, (QUANTILES[0], QUANTILES[-1]), axis=0)
    return high - low


def _slopes(best: np.ndarray, costs: np.ndarray, logs: np.ndarray, reference: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per draw, for the networks picked ``best`` ``[draws, levels]``: per factor the least-squares slope of
    their log on log(MACs / reference), moved by the slope's standard error times a t with ``levels - 2``
    degrees of freedom (the lack of fit), and the intercept ``[draws, factors]``."""
    x, y = np.log(costs[best] / reference), logs[best]
    slope, intercept = least_squares(x, y)
    xc = x - x.mean(1, keepdims=True)
    df = best.shape[1] - 2
    residual = y - intercept[:, None, :] - slope[:, None, :] * x[:, :, None]
    error = np.sqrt((residual**2).sum(1) / df / np.maximum((xc**2).sum(1), 1e-12)[:, None])
    return slope + error * rng.standard_t(df, size=slope.shape), intercept


def _one_variant(networks: list[Network], top: int) -> list[Network]:
    """v1 spaces: the networks of the variant of the most accurate one at the top budget (factors of two
    variants mean different networks)."""
    if len({n.config.variant for n in networks}) < 2:
        return networks
    fitting = [n for n in networks if n.macs <= top] or networks
    variant = max(fitting, key=lambda n: n.mean).config.variant
    return [n for n in networks if n.config.variant == variant]


def deciding_networks(facts: StudyFacts) -> list[Network]:
    """Every network the study's verdicts decided among at a deciding rung, less those a law check trained
    (as ``holdout.check_law`` leaves them out of the search's own best)."""
    checked = law_trained(facts.ledger, facts.plan.ladder.top)
    found = {n.config.network_key(): n for _, d in facts.verdicts if d.p_best for n in d.ranked}
    return [n for key, n in found.items() if key not in checked]


def study_law(facts: StudyFacts, trained: Sequence[tuple[ArchConfig, int]]) -> ScalingFormula | FormulaDeclined:
    """A family's law: from its deciding rung where its verdicts were taken there, else from its GP."""
    s, top = facts.settings, facts.plan.ladder.top
    deciding = deciding_networks(facts)
    if deciding:
        return deciding_law(deciding, facts.noise[top], s.budgets, seed=s.seed)
    return family_law(facts.surrogate, s.factor_space(), trained, s.budgets, seed=s.seed)


@dataclass(frozen=True)
class HeldOut:
    """The law fitted without one budget's band and applied there: ``pick`` is what it predicts for that
    budget (a declined law's median where it was fitted, None where it was not); ``dropped`` the observations
    left out."""

    budget: int
    formula: ScalingFormula | FormulaDeclined
    pick: FormulaPick | None
    dropped: int

    def to_dict(self) -> dict:
        pick = None if self.pick is None else {
            "config": self.pick.config.to_dict(), "config_id": self.pick.config.id, "macs": self.pick.macs,
            "mean": self.pick.mean, "std": self.pick.std, "extrapolated": self.pick.extrapolated}
        return {"budget": self.budget, "formula": self.formula.to_dict(), "pick": pick, "dropped": self.dropped}


def held_out_law(observations: Sequence[Observation], space: FactorSpace, budgets: Sequence[int], held_out: int,
                 seed: int = 0, noise_std: Sequence[float] | float | None = None, fidelities: int = 1,
                 rung_prior: BetaParams | Sequence[BetaParams] | None = None, n_samples: int = 256,
                 shuffles: int | None = None, deciding: Sequence[Network] = (),
                 deciding_noise: Noise | None = None) -> HeldOut:
    """The law from every observation outside ``held_out``'s band, applied at ``held_out``.

    The band is ``(next smaller budget, held_out]`` (the smallest budget's: everything up to it). ``noise_std``:
    per observation or one for all (None: learnt), as ``GPSurrogate.fit`` takes it. ``deciding``: the deciding
    rung's networks (with ``deciding_noise``): the law is then ``deciding_law`` of those outside the band. A
    declined law that was fitted still gives its median's pick; ``formula.declined`` says it was declined.
    """
    levels = _budgets(budgets)
    if len(levels) < MIN_LEVELS + 1:
        raise ValueError(f"budgets: leaving one out needs {MIN_LEVELS + 1} budgets ({MIN_LEVELS} to fit the law "
                         f"at and the one held out), got {len(levels)}")
    if held_out not in levels:
        raise ValueError(f"held_out: {_m(held_out)} MACs is not one of the budgets "
                         f"({', '.join(_m(b) for b in levels)})")
    index = levels.index(held_out)
    floor = levels[index - 1] if index else -math.inf
    keep = np.array([not floor < macs <= held_out for _, macs, _, _ in observations], dtype=bool)
    noise = noise_std
    if noise_std is not None and np.ndim(noise_std):
        noise = np.asarray(noise_std, dtype=np.float64)
        if noise.shape != keep.shape:
            raise ValueError(f"noise_std: need one per observation ({len(keep)}), got {len(noise)}")
        noise = noise[keep]
    kept = [o for o, k in zip(observations, keep) if k]
    surrogate = GPSurrogate(space, seed=seed, fidelities=fidelities, rung_prior=rung_prior).fit(
        [c for c, _, _, _ in kept], [a for _, _, a, _ in kept], [r for _, _, _, r in kept], noise)
    others = [b for b in levels if b != held_out]
    if deciding:
        formula = deciding_law([n for n in deciding if not floor < n.macs <= held_out], deciding_noise, others, seed)
    else:
        formula = derive_formula(surrogate, space, [(c, m) for c, m, _, _ in kept], others[-1], seed, n_samples,
                                 shuffles, levels=others)
    law = formula if isinstance(formula, ScalingFormula) else formula.fitted
    pick = None if law is None else apply_formula(law, held_out, space, surrogate)
    return HeldOut(held_out, formula, pick, int((~keep).sum()))


@dataclass(frozen=True)
class DownsizeStep:
    """One budget's network in a downsizing chain, with the GP's posterior mean and std there."""

    budget: int
    config: ArchConfig
    macs: int
    mean: float
    std: float

    def to_dict(self) -> dict:
        return {"budget": self.budget, "config": self.config.to_dict(), "config_id": self.config.id,
                "macs": self.macs, "mean": self.mean, "std": self.std}


def downsize(formula: ScalingFormula | FormulaDeclined, start: ArchConfig, budgets: Sequence[int],
             space: FactorSpace, surrogate: GPSurrogate) -> tuple[DownsizeStep, ...]:
    """One step per budget, largest first: the previous step's factors times ``(budget / previous) **
    exponent``, snapped by ``nearest_fitting`` (highest posterior mean among the nearest that fit).

    The chain starts at ``start``: the largest budget's network (it fits: the first ratio is 1 and it is kept,
    snapped to the grid) or a larger one such as v2 at width 1.0 (its own MACs are then the first ratio's
    denominator). A declined formula is refused: there is no law to step by.
    """
    if formula.declined:
        raise ValueError(f"downsize: no law to downsize by ({formula.reason})")
    levels = _budgets(budgets)[::-1]
    exponents = {law.factor: law.exponent for law in formula.laws}
    config, previous = start, max(levels[0], closed_form_cost(start).macs)
    steps = []
    for budget in levels:
        raw = {f: getattr(config, f) * (budget / previous) ** exponents[f] for f in FACTORS}
        config, macs, mean, std = nearest_fitting(raw, budget, space, surrogate, start.variant)
        steps.append(DownsizeStep(budget, config, macs, mean, std))
        previous = budget
    return tuple(steps)


def law_statements(formula: ScalingFormula | FormulaDeclined) -> list[str]:
    """What each factor does as the budget grows, as far as its exponent's 90 % interval carries it.

    An interval above 0 grows, below 0 shrinks (as the factor's ratio per doubling of MACs, ``2 ** exponent``);
    one that holds 0 and lies within +-``FLAT`` stays flat; any other says nothing. A growing factor grows
    *fastest* only where its interval lies wholly above every other factor's: the intervals are marginal
    (the draws' pairing is not kept), and disjoint 90 % intervals are a sufficient, conservative test.
    """
    if isinstance(formula, FormulaDeclined):
        said = [] if formula.fitted is None else [
            f"{law.factor} alone: {_statement(law, formula.fitted.laws, carried=True)}; {_evidence(law)}"
            if law.carried else f"{law.factor} alone: not carried (exponent {_exponent(law)}; {_evidence(law)})"
            for law in formula.fitted.laws]
        return [f"no law across budgets: {formula.reason}", *said]
    return [_statement(law, formula.laws) for law in formula.laws]


def _statement(law: FactorLaw, laws: Sequence[FactorLaw], carried: bool = False) -> str:
    """One factor in words. A ``carried`` factor whose interval holds 0 but is not flat gets its ratio per
    doubling with the interval (narrow against a blind pick, yet neither growth nor shrinkage is shown)."""
    low, high = law.interval
    per_doubling = f"x{2 ** law.exponent:.2f} per doubling of MACs [x{2 ** low:.2f}, x{2 ** high:.2f}]"
    if low > 0 or high < 0:
        fastest = low > 0 and all(low > other.interval[1] for other in laws if other is not law)
        verb = "grows fastest" if fastest else "grows" if low > 0 else "shrinks"
        return f"{law.factor} {verb}: {per_doubling}"
    if max(-low, high) <= FLAT:
        return f"{law.factor} stays flat (exponent {_exponent(law)})"
    if carried:
        return f"{law.factor} {per_doubling}, neither growth nor shrinkage shown"
    return f"the evidence does not say what {law.factor} does (exponent {_exponent(law)})"


def _evidence(law: FactorLaw) -> str:
    """``0.19 x a blind pick's, p = 0.002``: what carries (or does not carry) one factor alone."""
    tested = "" if law.permutation is None else f", p = {law.permutation.p_value:.2g} against relabelled networks"
    return f"{law.relative_width:.2f} x a blind pick's{tested}"


def efficientnet_exponents() -> dict[str, float]:
    """Per factor, the exponent of MACs EfficientNet's compound rule implies: depth ``ALPHA ** phi`` (both
    depths), width ``BETA ** phi``, resolution ``GAMMA ** phi``, MACs doubling per unit of ``phi`` (its
    nominal constraint; ``ALPHA * BETA**2 * GAMMA**2`` is 1.92), so ``log(coefficient) / log(2)``."""
    coefficients = {"resolution": GAMMA, "width": BETA, "mv2_depth": ALPHA, "vit_depth": ALPHA}
    return {f: math.log(coefficients[f]) / math.log(2) for f in FACTORS}


def _budgets(budgets: Sequence[int]) -> list[int]:
    """The distinct budgets, ascending; refuses none or a non-positive one."""
    levels = sorted(set(budgets))
    if not levels or levels[0] <= 0:
        raise ValueError(f"budgets: need positive MAC budgets, got {list(budgets)}")
    return levels


def _exponent(law: FactorLaw) -> str:
    return f"{law.exponent:.2f} [{law.interval[0]:.2f}, {law.interval[1]:.2f}]"
