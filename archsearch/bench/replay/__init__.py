"""Replays: the search strategies run against scored tables (``bench-table``) instead of training.

Each (strategy, replay seed) is a real ``search.run_trials`` search on an in-memory Optuna study (no
heartbeats, no result cache) whose evaluator answers every job from the tables of its rung, with the noise of
a real score. ``problem`` defines what is searched (rungs, points, cost of a job, noise, truth), ``search``
runs one search and decides its winner at a few costs, ``report`` gathers many and says what they show.
"""

from .problem import COST_MODELS, Problem, Rung
from .report import (
    TOLERANCE_POINTS,
    Report,
    default_costs,
    median,
    render,
    replay,
    write_outputs,
)
from .search import (
    DEFAULT_STRATEGIES,
    MULTI,
    STRATEGIES,
    Pick,
    Search,
    Setup,
    SnapToTable,
    TableEvaluator,
    planned_cost,
    search,
    trials_for,
)

__all__ = [
    "COST_MODELS", "DEFAULT_STRATEGIES", "MULTI", "STRATEGIES", "TOLERANCE_POINTS", "Pick", "Problem", "Report",
    "Rung", "Search", "Setup", "SnapToTable", "TableEvaluator", "default_costs", "median", "planned_cost", "render",
    "replay", "search", "trials_for", "write_outputs",
]
