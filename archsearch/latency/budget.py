"""Latency budgets: reading one, the configs a latency model predicts within it, and checking a measurement.

A search under ``--latency-budget`` proposes only configs whose *predicted* latency fits (and whose MACs fit
``--mac-budget`` when both are given); a trained config's *measured* latency is then checked with
``check_latency``: one over the budget is flagged and must not be reported as the feasible winner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import ArchConfig
from ..cost import distinct_networks
from ..space import FactorSpace
from .backends import LatencyError
from .measure import LatencyRecord
from .predict import LatencyModel

_LATENCY = re.compile(r"^\s*(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)\s*(s|ms|us|µs|μs)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6}


class LatencyBudgetError(LatencyError):
    """A latency budget that cannot be read, or that no config of the space is predicted to meet."""


def parse_latency(text: str, option: str = "--latency-budget") -> float:
    """'4ms', '4 ms', '0.004s', '250us', '250µs' -> seconds. A unit is required: '4' alone is ambiguous."""
    match = _LATENCY.match(str(text))
    if not match:
        raise LatencyBudgetError(f"{option}: cannot read {text!r}; write a time with its unit, e.g. 4ms, 4 ms, "
                                 "0.004s or 250us")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2).lower()]
    if not seconds > 0:
        raise LatencyBudgetError(f"{option}: {text!r} is not a positive time")
    return seconds


def format_seconds(seconds: float) -> str:
    """0.004 -> '4 ms', 0.00025 -> '250 us', 1.5 -> '1.5 s'."""
    if seconds >= 1:
        return f"{seconds:.4g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.4g} ms"
    return f"{seconds * 1e6:.4g} us"


@dataclass(frozen=True)
class LatencyFeasible:
    """The distinct networks of the space within the budgets, with MACs and predicted latency (seconds)."""

    configs: list[ArchConfig]
    macs: list[int]
    predicted_s: list[float]
    fastest: tuple[ArchConfig, float]  # the fastest network within the MAC budget (or of the space)


def feasible_by_latency(space: FactorSpace, model: LatencyModel, latency_budget_s: float | None = None,
                        mac_budget: int | None = None) -> LatencyFeasible:
    """Every distinct network of ``space`` (the first grid point of each, as ``search.feasible_grid``) whose
    MACs fit ``mac_budget`` and whose latency ``model`` predicts within ``latency_budget_s`` (either budget
    may be None). A one-line ``LatencyBudgetError`` naming the budget that leaves nothing."""
    if space.family != model.space.family:
        raise LatencyBudgetError(f"--latency-budget: the latency model is of {model.space.family}, the space of "
                                 f"{space.family}")
    networks = list(distinct_networks(space))
    within_macs = [(c, m) for c, m in networks if mac_budget is None or m <= mac_budget]
    if not within_macs:
        cheapest = min(networks, key=lambda cm: cm[1])
        raise LatencyBudgetError(f"--mac-budget: {mac_budget / 1e6:.1f}M is below the cheapest config of the space, "
                                 f"{cheapest[0].id} at {cheapest[1] / 1e6:.1f}M MACs")
    predicted = model.predict_seconds([c for c, _ in within_macs])
    best = int(predicted.argmin())
    fastest = (within_macs[best][0], float(predicted[best]))
    chosen = [(c, m, float(p)) for (c, m), p in zip(within_macs, predicted)
              if latency_budget_s is None or p <= latency_budget_s]
    if not chosen:
        scope = f"config within --mac-budget {mac_budget / 1e6:g}M" if mac_budget is not None else "config of the space"
        raise LatencyBudgetError(
            f"--latency-budget: {format_seconds(latency_budget_s)} is below the fastest {scope}, {fastest[0].id} "
            f"predicted at {format_seconds(fastest[1])} on {model.backend} (batch {model.batch}, "
            f"{model.threads} thread{'s' if model.threads != 1 else ''})")
    return LatencyFeasible([c for c, _, _ in chosen], [m for _, m, _ in chosen], [p for _, _, p in chosen], fastest)


@dataclass(frozen=True)
class LatencyCheck:
    """A trained config's measured latency against the budget."""

    measured_s: float
    budget_s: float
    within: bool

    @property
    def over_by_pct(self) -> float:
        return max(0.0, 100 * (self.measured_s / self.budget_s - 1))

    def describe(self) -> str:
        verdict = "within" if self.within else f"OVER by {self.over_by_pct:.1f} %:"
        return f"measured {format_seconds(self.measured_s)}, {verdict} the budget {format_seconds(self.budget_s)}"


def check_latency(measured: LatencyRecord | float, budget_s: float) -> LatencyCheck:
    """Is the measured median latency (a record, or seconds) within the budget? Strictly: the median must not
    exceed the budget, so a config the model placed just inside but that runs slower is flagged."""
    seconds = measured.median_s if isinstance(measured, LatencyRecord) else float(measured)
    return LatencyCheck(seconds, budget_s, seconds <= budget_s)
