"""What every strategy is built from (``SearchProblem``), and what the registry says of one (``Strategy``).

Every strategy is an Optuna sampler (``optuna.samplers.BaseSampler``) that proposes rung-0 configs, built the
same way from the search problem and a seed, so that ``run``, ``worker`` and the replays make any of them
alike (``make_sampler``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from ...latency.budget import LatencyLimit
from ...model.config import ArchConfig
from ...model.space import FactorSpace
from ..fidelity import Ladder
from ..noise import PRIOR_DATA

N_INITIAL = 4  # proposals before a model takes over: the GP's space-filling design, TPE's random start-up


@dataclass(frozen=True)
class SearchProblem:
    """What a strategy proposes from: the factor space, the distinct configs within the budget(s) and their
    MACs, the MAC budget, and the ladder (the GP models every rung's scores)."""

    space: FactorSpace
    candidates: list[ArchConfig]
    costs: list[int]
    budget: int
    ladder: Ladder
    data: str = PRIOR_DATA  # the study's data: the noise priors count fewer degrees of freedom off Imagenette
    budgets: tuple[int, ...] = ()  # a family's MAC budgets, cheapest first (``budget`` the largest); () for one
    limits: tuple[LatencyLimit | None, ...] = ()  # each target's latency limit (): the candidates' one

    @property
    def targets(self) -> tuple[int, ...]:
        """The budgets proposals are made for, in turn: a family's, or the one budget."""
        return self.budgets or (self.budget,)

    def within(self, target: int) -> list[int]:
        """The candidates (their indices) that fit target ``target``'s MAC budget and its latency limit."""
        budget = self.targets[target]
        limit = self.limits[target] if self.limits else None
        within = [i for i, cost in enumerate(self.costs) if cost <= budget]
        if limit is None:
            return within
        predicted = limit.predicted_s([self.candidates[i] for i in within])  # one call, as feasible_grid's
        return [i for i, seconds in zip(within, predicted) if seconds <= limit.budget_s]


@dataclass(frozen=True)
class Strategy:
    """One entry of the registry: how to build the strategy's sampler, its line of ``--help``, and what the
    commands must know of it (instead of testing its name)."""

    name: str
    build: Callable[[SearchProblem, int], optuna.samplers.BaseSampler]  # (problem, seed) -> sampler
    help: str
    directions: tuple[str, ...] = ("maximize",)  # the study's objectives: accuracy, then any other
    one_rung: bool = False  # searches a ladder of one rung only
    within_budget: bool = False  # proposes only the problem's candidates (else anywhere on the factor grid)
    models_rungs: bool = False  # models every rung's scores together: replays compare its mf- search by default
