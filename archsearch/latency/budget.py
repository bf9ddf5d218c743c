"""Latency budgets: reading one, the configs a latency model predicts within it, and checking a measurement.

A search under ``--latency-budget`` proposes only configs whose *predicted* latency fits as well as their MACs
(``LatencyLimit``, read by ``search.feasible_grid`` and the baselines); a trained config's *measured* latency
is then checked with ``check_latency``: one over the budget is flagged and is never the winner (``decision``).
A study keeps its latency options as ``LatencySettings``: how its trials are timed, and the budget if any.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ..model.config import ArchConfig
from .backends import DEFAULT_BACKEND, LatencyError
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


@dataclass(frozen=True)
class LatencyLimit:
    """A latency budget with the model that predicts it: what a search's candidates and baselines must fit
    (by prediction), and what every trained config's measured latency is checked against."""

    budget_s: float
    model: LatencyModel

    @property
    def backend(self) -> str:
        return self.model.backend

    def predicted_s(self, configs: list[ArchConfig]) -> list[float]:
        return [float(p) for p in self.model.predict_seconds(configs)]

    def fits(self, config: ArchConfig) -> bool:
        return self.predicted_s([config])[0] <= self.budget_s

    def fill(self, config: ArchConfig) -> float:
        """The fraction of the latency budget the config is predicted to use."""
        return self.predicted_s([config])[0] / self.budget_s

    def to_settings(self) -> LatencySettings:
        """As a study keeps it (the whole model, so remote workers predict alike)."""
        return LatencySettings(self.budget_s, self.model.backend, self.model.batch, self.model.threads,
                               self.model.to_dict())

    def describe(self) -> str:
        return f"{format_seconds(self.budget_s)} on {self.model.describe()}"


@dataclass(frozen=True)
class LatencySettings:
    """A study's latency options: where its trained networks are timed and, with a budget, the model that
    predicts it. The defaults are how a study without latency options times its trials. Stored in the study
    as the dict ``to_dict`` gives, which older studies hold too."""

    budget_s: float | None = None  # None: the trials are timed, no budget binds; a family's: the loosest
    backend: str = DEFAULT_BACKEND
    batch: int = 1
    threads: int = 1
    model: dict | None = None  # the budget's ``LatencyModel.to_dict()``
    budgets_s: tuple[float, ...] | None = None  # a family's, one per MAC budget, tightest first; None: one budget

    def limit(self) -> LatencyLimit | None:
        """The budget with its model, what proposals must fit (None: no budget; a family's: the loosest)."""
        if self.budget_s is None:
            return None
        return LatencyLimit(float(self.budget_s), LatencyModel.from_dict(self.model))

    def limits(self, members: int) -> tuple[LatencyLimit | None, ...]:
        """Each of ``members`` budgets' limit, cheapest first: a family's own (``--latency-budget 5ms,8ms``),
        else the one limit (or none) at every budget."""
        if not self.budgets_s:
            return (self.limit(),) * members
        model = LatencyModel.from_dict(self.model)
        return tuple(LatencyLimit(float(b), model) for b in self.budgets_s)

    def tag(self) -> str:
        """The default study name's latency part: ``4ms-ort-cpu`` (a budget), ``4ms_8ms-ort-cpu`` (a family's),
        ``torch-cpu`` (a backend only)."""
        if self.budget_s is None:
            return self.backend
        return "_".join(f"{b * 1e3:g}ms" for b in (self.budgets_s or (self.budget_s,))) + f"-{self.backend}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> LatencySettings:
        budgets = stored.get("budgets_s")
        return cls(**{**stored, "budgets_s": None if budgets is None else tuple(budgets)})
