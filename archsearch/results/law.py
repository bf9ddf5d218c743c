"""The law across a family's budgets: one scaling law for a multi-budget study, checked, applied and said.

A multi-budget study trains networks near each of its budgets, so the law is read where that evidence is:
``family_law`` is ``derive_formula`` at the budgets themselves (the largest is the law's reference), declined
where the evidence is thin and permutation-tested as every formula is.

* **Leave one budget out** (``held_out_law``). A law that only restates the networks it was fitted on says
  nothing about a budget nobody searched. So every observation in one budget's band (above the next smaller
  budget, up to that budget) is dropped, the GP is refitted on the rest, the law is derived at the other
  budgets and applied at the dropped one; the caller compares its pick with that budget's own verdict. It
  needs ``MIN_LEVELS`` other budgets to fit at, so ``MIN_LEVELS + 1`` in all.
* **Iterative downsizing** (``downsize``), the seed paper's: from one network at the top, each smaller
  budget's network is the previous one with every factor multiplied by the law's ratio for the step,
  snapped to the grid within the budget (as ``apply_formula`` snaps).
* **In words** (``law_statements``): only what each exponent's 90 % interval carries.
* **EfficientNet's rule** (``efficientnet_exponents``): the exponents its compound coefficients imply, to set
  the fitted law against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..gp.models import BetaParams
from ..gp.surrogate import GPSurrogate
from ..model.config import ArchConfig
from ..model.cost import closed_form_cost
from ..model.space import FACTORS, FactorSpace
from ..search.baselines import ALPHA, BETA, GAMMA
from .formula import (
    MIN_LEVELS,
    FactorLaw,
    FormulaDeclined,
    FormulaPick,
    ScalingFormula,
    _m,
    apply_formula,
    derive_formula,
    nearest_fitting,
)

FLAT = 0.15  # "stays flat": the exponent's 90 % interval within +-FLAT (under 11 % change per doubling of MACs)

Observation = tuple[ArchConfig, int, float, int]  # one job: config, MACs, accuracy, rung


def family_law(surrogate: GPSurrogate, space: FactorSpace, trained: Sequence[tuple[ArchConfig, int]],
               budgets: Sequence[int], seed: int = 0, n_samples: int = 256,
               shuffles: int | None = None) -> ScalingFormula | FormulaDeclined:
    """The law across ``budgets``: the formula fitted at each budget (reference: the largest), or why none."""
    levels = _budgets(budgets)
    return derive_formula(surrogate, space, trained, levels[-1], seed, n_samples, shuffles, levels=levels)


@dataclass(frozen=True)
class HeldOut:
    """The law fitted without one budget's band and applied there: ``pick`` is what it predicts for that
    budget (None where the law declined); ``dropped`` the observations left out."""

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
                 shuffles: int | None = None) -> HeldOut:
    """The law from every observation outside ``held_out``'s band, applied at ``held_out``.

    The band is ``(next smaller budget, held_out]`` (the smallest budget's: everything up to it). ``noise_std``:
    per observation or one for all (None: learnt), as ``GPSurrogate.fit`` takes it.
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
    formula = derive_formula(surrogate, space, [(c, m) for c, m, _, _ in kept], others[-1], seed, n_samples,
                             shuffles, levels=others)
    pick = apply_formula(formula, held_out, space, surrogate) if isinstance(formula, ScalingFormula) else None
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
        return [f"no law across budgets: {formula.reason}"]
    statements = []
    for law in formula.laws:
        low, high = law.interval
        if low > 0 or high < 0:
            fastest = low > 0 and all(low > other.interval[1] for other in formula.laws if other is not law)
            verb = "grows fastest" if fastest else "grows" if low > 0 else "shrinks"
            statements.append(f"{law.factor} {verb}: x{2 ** law.exponent:.2f} per doubling of MACs "
                              f"[x{2 ** low:.2f}, x{2 ** high:.2f}]")
        elif max(-low, high) <= FLAT:
            statements.append(f"{law.factor} stays flat (exponent {_exponent(law)})")
        else:
            statements.append(f"the evidence does not say what {law.factor} does (exponent {_exponent(law)})")
    return statements


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
