"""The search: what a study trains and how it runs.

``settings`` (what defines a study), ``study`` (Optuna storage, names, the result cache), ``params`` (trials
<-> configs), ``budget`` (the configs within the MAC and latency budgets), ``fidelity`` (ladders, noise,
bias), ``baselines``, ``jobs`` (the plan of rungs, the ledger of jobs), ``networks`` (a network's jobs at one
rung: the one per-network view), ``strategies/`` (the registry of samplers), ``heartbeat``, ``loop`` (trains
due jobs with any evaluator), ``evaluator`` (the one that trains; needs torch) and ``session`` (the one
pipeline every command and test searches through).
"""

from .budget import BudgetError, Feasible, feasible_grid, parse_budgets, parse_macs
from .jobs import BASELINE, SEARCH, Done, Job, Ledger, Plan, Proposal, Wait
from .loop import (
    MAX_WASTED_STREAK,
    Evaluator,
    SearchProgress,
    recover_interrupted,
    run_trials,
)

__all__ = [
    "BASELINE", "MAX_WASTED_STREAK", "SEARCH", "BudgetError", "Done", "Evaluator", "Feasible", "Job", "Ledger",
    "Plan", "Proposal", "SearchProgress", "Wait", "feasible_grid",
    "parse_budgets", "parse_macs", "recover_interrupted", "run_trials",
]
