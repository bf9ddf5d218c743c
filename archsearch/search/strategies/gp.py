"""The GP proposer (``gp.acquisition.GPProposer``) as an Optuna sampler, and its space-filling design alone.

``GPSampler`` reads every job of the study: finished ones at every rung are the observations, each with its
rung's noise; running and queued ones are pending. ``DesignSampler`` never leaves the design: the baseline
that shows what the GP adds.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from ...gp.acquisition import CandidatesExhausted, GPProposer
from ...gp.models import rung_priors
from ..budget import BudgetError
from ..params import config_params, distributions
from ._ledger import observations, other_jobs
from .base import N_INITIAL, SearchProblem


class GPSampler(optuna.samplers.BaseSampler):
    """Augmented expected improvement of a (multi-fidelity) Matern-5/2 GP over the feasible grid points.

    A family (several MAC budgets) takes its budgets in turn, cheapest first: proposal ``i`` is made for budget
    ``i mod K`` by a proposer over the candidates within it and its latency limit (its design drawn near that
    budget, its incumbent the best observed network within it), every proposer fitting the one GP to every job
    of the study. The space-filling design is shared out: ``n_initial / K`` proposals a budget, at least one."""

    def __init__(self, problem: SearchProblem, seed: int = 0, n_initial: int = N_INITIAL):
        self.space = problem.space
        self.ladder, self.data = problem.ladder, problem.data
        ladder, targets = problem.ladder, problem.targets
        per_budget = max(1, math.ceil(n_initial / len(targets)))
        prior = rung_priors([ladder.continues(r) for r in range(ladder.top)])
        self.proposers = []
        for target, budget in enumerate(targets):
            within = problem.within(target)
            self.proposers.append(GPProposer(problem.space, [problem.candidates[i] for i in within],
                                             costs=[problem.costs[i] for i in within], budget=budget,
                                             n_initial=per_budget, seed=seed, fidelities=len(ladder.rungs),
                                             rung_prior=prior))
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return distributions(self.space)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.system_attrs.get("fixed_params") or trial.params:  # a queued job brings its own
            return {}
        ledger = other_jobs(study, trial)
        observed, pending, failed, noise = observations(ledger, self.ladder, self.data)
        proposed = len(ledger.search_networks(0))  # the baselines' networks do not count toward the design
        count = len(self.proposers)
        for turn in range(proposed, proposed + count):  # a budget whose networks are all taken gives way to the next
            try:
                return config_params(self.proposers[turn % count].ask(observed, pending, failed, noise,
                                                                      turn // count), self.space)
            except CandidatesExhausted:
                continue
        raise BudgetError(f"every network within the budget{'s' if count > 1 else ''} is screened or in flight "
                          f"({proposed} proposals): give a wider budget or fewer --trials")

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


class DesignSampler(GPSampler):
    """The GP sampler whose space-filling design outlasts every candidate, so the GP is never fitted."""

    def __init__(self, problem: SearchProblem, seed: int = 0):
        super().__init__(problem, seed, n_initial=len(problem.candidates) + 1)
