"""The search: budgets (``budget``), jobs and the plan of rungs (``jobs``), liveness (``heartbeat``) and the
loop that trains due jobs (``loop``; the evaluator that trains, which needs torch, is ``evaluator``). Data flows one way: the closed-form cost model filters the factor grid
to the configs within the MAC budget; a strategy (an Optuna sampler) proposes rung-0 configs; the plan
promotes the best up the fidelity ladder and adds the baselines; an evaluator scores each job (proxy
training, or a table lookup in replays); the result is stored on the trial and cached.
"""

from .budget import BudgetError, Feasible, feasible_grid, parse_macs
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
    "parse_macs", "recover_interrupted", "run_trials",
]
