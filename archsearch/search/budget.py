"""MAC budgets: parsing one, and the grid points that fit it (one per distinct network)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..latency.budget import LatencyBudgetError, LatencyLimit, format_seconds
from ..model.config import ArchConfig, ConfigError
from ..model.cost import distinct_networks
from ..model.space import FactorSpace


class BudgetError(ConfigError):
    """A MAC budget that cannot be parsed or that no config of the space meets."""


_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)\s*(?:macs?)?\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_macs(text: str) -> int:
    """'300M', '0.3G', '300000000', '1.2GMACs' (any case) -> MACs as an integer."""
    match = _BUDGET.match(str(text))
    if not match:
        raise BudgetError(f"--mac-budget: cannot read {text!r}; write e.g. 300M, 0.3G, 1.2GMACs or 300000000")
    value = round(float(match.group(1)) * _SCALE[match.group(2).lower()])
    if value <= 0:
        raise BudgetError(f"--mac-budget: {text!r} is not a positive number of MACs")
    return value


def parse_budgets(text: str) -> tuple[int, ...]:
    """'75M,150M,300M' -> every budget, cheapest first (one budget: a tuple of one); a repeated budget is an
    error (a family has one member per budget)."""
    parts = [p for p in str(text).split(",")]
    if any(not p.strip() for p in parts):
        raise BudgetError(f"--mac-budget: {text!r} has an empty entry; write e.g. 75M,150M,300M")
    budgets = [parse_macs(p) for p in parts]
    repeated = sorted({b for b in budgets if budgets.count(b) > 1})
    if repeated:
        raise BudgetError(f"--mac-budget: {', '.join(f'{b / 1e6:g}M' for b in repeated)} given twice; "
                          "each budget once")
    return tuple(sorted(budgets))


@dataclass(frozen=True)
class Feasible:
    """The grid points within budget (with their MACs), and where the budget sits in the space."""

    configs: list[ArchConfig]
    macs: list[int]
    cheapest: tuple[ArchConfig, int]
    dearest: tuple[ArchConfig, int]


def feasible_grid(space: FactorSpace, budget: int, latency: LatencyLimit | None = None) -> Feasible:
    """Every grid point costed in closed form, one per distinct network (the first in grid order), within
    ``budget`` and, where given, predicted within ``latency``; an error naming the cheapest (or the fastest)
    config if none fits."""
    configs, macs = [], []
    cheapest = dearest = None
    for config, cost in distinct_networks(space):
        if cheapest is None or cost < cheapest[1]:
            cheapest = (config, cost)
        if dearest is None or cost > dearest[1]:
            dearest = (config, cost)
        if cost <= budget:
            configs.append(config)
            macs.append(cost)
    if not configs:
        raise BudgetError(
            f"--mac-budget: {budget / 1e6:.1f}M is below the cheapest config of the space, "
            f"{cheapest[0].id} at {cheapest[1] / 1e6:.1f}M MACs"
        )
    if latency is not None:
        predicted = latency.predicted_s(configs)
        kept = [i for i, p in enumerate(predicted) if p <= latency.budget_s]
        if not kept:
            fastest = min(range(len(configs)), key=predicted.__getitem__)
            raise LatencyBudgetError(
                f"--latency-budget: {format_seconds(latency.budget_s)} is below the fastest config within the MAC "
                f"budget, {configs[fastest].id}, predicted at {format_seconds(predicted[fastest])} on "
                f"{latency.backend}")
        configs, macs = [configs[i] for i in kept], [macs[i] for i in kept]
    return Feasible(configs, macs, cheapest, dearest)
