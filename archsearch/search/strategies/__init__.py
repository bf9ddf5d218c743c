"""Search strategies, in the style of Optuna's samplers: one sampler per strategy, one registry of them.

A strategy only proposes rung-0 configs (``search.jobs``: promotions and baselines are planned, not sampled).
``gp`` is the multi-fidelity GP proposer behind Optuna's ``BaseSampler`` (``gp.GPSampler``); ``design`` is
the same proposer without the GP, its space-filling design all the way; ``tpe``, ``random`` and ``nsga3`` are
Optuna's, as baselines (``optuna_samplers``). ``registry.STRATEGIES`` is the one list the CLI's choices and
help, the stored study and the replays derive from; ``make_sampler`` builds any of them.
"""

from .base import N_INITIAL, SearchProblem, Strategy
from .gp import DesignSampler, GPSampler
from .registry import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    get_strategy,
    make_sampler,
    strategies_help,
)

__all__ = [
    "DEFAULT_STRATEGY", "N_INITIAL", "STRATEGIES", "DesignSampler", "GPSampler", "SearchProblem", "Strategy",
    "get_strategy", "make_sampler", "strategies_help",
]
