"""The scaling formula derived from the GP: how to shrink a base MobileViT to any MAC budget.

Starting from the base model (v2 width 1.0 at 256 px, depths 1.0), the downsizing path repeatedly takes the
one-grid-step reduction of a single factor with the smallest predicted accuracy loss per MAC saved, down to
the cheapest config of the space. Along that path each factor is fitted as
``factor = base * (MACs / base_MACs) ** e`` (least squares in log space, through the base), which gives a
closed formula for any budget. Applying it snaps the factors to the grid and, if the snapped config is
still over budget, continues greedily with the same rule.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .config import ArchConfig
from .cost import closed_form_cost
from .space import FACTORS, FactorSpace
from .surrogate import GPSurrogate

BASE_RESOLUTION = 256


@dataclass(frozen=True)
class ScalingFormula:
    base: ArchConfig
    base_macs: int
    exponents: dict[str, float]
    path: tuple[dict, ...]  # every step: factor changed, config, MACs, predicted accuracy

    def describe(self) -> str:
        return formula_text(self.base.to_dict(), self.base_macs, self.exponents)

    def raw_factors(self, budget: int) -> dict[str, float]:
        ratio = budget / self.base_macs
        return {f: getattr(self.base, f) * ratio ** self.exponents[f] for f in FACTORS}

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "base_macs": self.base_macs, "exponents": self.exponents,
                "path": list(self.path)}


def formula_text(base: dict, base_macs: int, exponents: dict[str, float]) -> str:
    """One line per factor: ``width = 1 * (MACs / 1844M)^0.412``."""
    return "\n".join(
        f"  {f:<10} = {base[f]:g} * (MACs / {base_macs / 1e6:.0f}M)^{exponents[f]:.3f}" for f in FACTORS
    )


def base_config(space: FactorSpace) -> ArchConfig:
    """The downsizing start: width and depths 1.0 (snapped to the grid) at the resolution nearest 256 px."""
    values = {f: _nearest(space, f, BASE_RESOLUTION if f == "resolution" else 1.0) for f in FACTORS}
    return ArchConfig(space.family, num_classes=space.num_classes, variant=space.variants[0],
                      **{**values, "resolution": int(values["resolution"])})


def _nearest(space: FactorSpace, factor: str, value: float) -> float:
    return min(space.range(factor).values(), key=lambda v: abs(v - value))


def _step_down(space: FactorSpace, config: ArchConfig) -> list[tuple[str, ArchConfig, int]]:
    """For each factor, the nearest lower grid value that makes the network cheaper (values that build
    the same network, such as v2 MV2 depth 0.75 and 1.0, are stepped over)."""
    macs = closed_form_cost(config).macs
    moves = []
    for factor in FACTORS:
        values = space.range(factor).values()
        current = values.index(_nearest(space, factor, getattr(config, factor)))
        for lower in reversed(values[:current]):
            candidate = config.replace(**{factor: int(lower) if factor == "resolution" else lower})
            cost = closed_form_cost(candidate).macs
            if cost < macs:
                moves.append((factor, candidate, cost))
                break
    return moves


def _greedy_step(space: FactorSpace, surrogate: GPSurrogate, config: ArchConfig, macs: int, accuracy: float):
    """The cheapest-in-accuracy step down, or None at the bottom of the space."""
    moves = _step_down(space, config)
    if not moves:
        return None
    means, _ = surrogate.predict([c for _, c, _ in moves])
    losses = [(accuracy - mean) / (macs - m) for mean, (_, _, m) in zip(means, moves)]
    i = int(np.argmin(losses))
    factor, config, new_macs = moves[i]
    return factor, config, new_macs, float(means[i])


def derive_formula(surrogate: GPSurrogate, space: FactorSpace, base: ArchConfig | None = None) -> ScalingFormula:
    base = base or base_config(space)
    macs = closed_form_cost(base).macs
    accuracy = float(surrogate.predict([base])[0][0])
    path = [{"factor": None, "config": base.to_dict(), "config_id": base.id, "macs": macs,
             "predicted_accuracy": accuracy}]
    config = base
    while (step := _greedy_step(space, surrogate, config, macs, accuracy)) is not None:
        factor, config, macs, accuracy = step
        path.append({"factor": factor, "config": config.to_dict(), "config_id": config.id, "macs": macs,
                     "predicted_accuracy": accuracy})
    x = np.array([math.log(p["macs"] / path[0]["macs"]) for p in path])
    exponents = {}
    for factor in FACTORS:
        y = np.array([math.log(p["config"][factor] / getattr(base, factor)) for p in path])
        exponents[factor] = float(x @ y / (x @ x)) if x @ x > 0 else 0.0
    return ScalingFormula(base, path[0]["macs"], exponents, tuple(path))


def apply_formula(formula: ScalingFormula, budget: int, space: FactorSpace,
                  surrogate: GPSurrogate) -> tuple[ArchConfig, int, float, float]:
    """The grid config the formula gives for ``budget``: (config, MACs, predicted mean, predicted std).

    The formula's factors fall between grid values: of the grid neighbours (each factor rounded down or up)
    within budget, the one with the highest predicted accuracy is taken; if none fits, the all-down
    neighbour is shrunk further by the greedy downsizing rule.
    """
    raw = formula.raw_factors(budget)
    options = [_neighbours(space, f, raw[f]) for f in FACTORS]
    candidates = [formula.base.replace(**_grid_values(dict(zip(FACTORS, values))))
                  for values in itertools.product(*options)]
    fitting = [(c, m) for c in candidates if (m := closed_form_cost(c).macs) <= budget]
    if fitting:
        means, _ = surrogate.predict([c for c, _ in fitting])
        config, macs = fitting[int(np.argmax(means))]
    else:
        config = formula.base.replace(**_grid_values({f: o[0] for f, o in zip(FACTORS, options)}))
        macs = closed_form_cost(config).macs
        accuracy = float(surrogate.predict([config])[0][0])
        while macs > budget and (step := _greedy_step(space, surrogate, config, macs, accuracy)) is not None:
            _, config, macs, accuracy = step
    mean, std = surrogate.predict([config])
    return config, macs, float(mean[0]), float(std[0])


def _neighbours(space: FactorSpace, factor: str, value: float) -> tuple[float, ...]:
    """The grid values just below and just above ``value`` (one value at or beyond the range's ends)."""
    values = space.range(factor).values()
    below = [v for v in values if v <= value + 1e-9]
    above = [v for v in values if v >= value - 1e-9]
    return tuple(dict.fromkeys([below[-1] if below else values[0], above[0] if above else values[-1]]))


def _grid_values(values: dict[str, float]) -> dict[str, float]:
    return {**values, "resolution": int(values["resolution"])}
