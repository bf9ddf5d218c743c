"""The one list of search strategies: ``run --strategy``, the stored study, ``worker`` and the replays read it.

Order matters only for display: the method, its ablation, then Optuna's baselines.
"""

from __future__ import annotations

import optuna

from ...latency.budget import LatencyLimit
from ...model.config import ArchConfig, ConfigError
from ...model.space import FactorSpace
from ..fidelity import Ladder
from ..noise import PRIOR_DATA
from .base import SearchProblem, Strategy
from .gp import DesignSampler, GPSampler
from .optuna_samplers import nsga3_sampler, random_sampler, tpe_sampler

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("gp", GPSampler, "multi-fidelity GP with augmented expected improvement",
             within_budget=True, models_rungs=True),
    Strategy("design", DesignSampler, "the GP's space-filling design alone (what the GP adds)", within_budget=True),
    Strategy("tpe", tpe_sampler, "Optuna's TPE, as a baseline"),
    Strategy("random", random_sampler, "Optuna's random sampler, as a baseline"),
    Strategy("nsga3", nsga3_sampler, "Optuna's NSGA-III for the accuracy/MACs Pareto front (one rung only)",
             directions=("maximize", "minimize"), one_rung=True),
)}
DEFAULT_STRATEGY = "gp"


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"--strategy: {name!r} is not one of {', '.join(STRATEGIES)}") from None


def strategies_help() -> str:
    """Every strategy's line of ``--help``, the default marked."""
    return "; ".join(f"{s.name}{' (default)' if s.name == DEFAULT_STRATEGY else ''}: {s.help}"
                     for s in STRATEGIES.values())


def make_sampler(name: str, space: FactorSpace, candidates: list[ArchConfig], costs: list[int], budget: int,
                 ladder: Ladder, seed: int, data: str = PRIOR_DATA,
                 budgets: tuple[int, ...] = (), limits: tuple[LatencyLimit | None, ...] = ()
                 ) -> optuna.samplers.BaseSampler:
    """The sampler of strategy ``name`` for this search (``budgets``: a family's, cheapest first; ``limits``:
    their latency limits): the one way every command builds one."""
    problem = SearchProblem(space, candidates, costs, budget, ladder, data, budgets, limits)
    return get_strategy(name).build(problem, seed)
