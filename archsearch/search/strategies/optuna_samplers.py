"""Optuna's own samplers as strategies: the baselines a search is compared with.

Factories, not subclasses: a subclass of a genetic sampler keys its stored generations by its class name, so
NSGA-III studies would no longer resume. They propose anywhere on the factor grid; a proposal over the budget
is skipped by the loop (``search.loop``) as infeasible.
"""

from __future__ import annotations

import optuna

from .base import N_INITIAL, SearchProblem

NSGA3_POPULATION = 8


def tpe_sampler(problem: SearchProblem, seed: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_INITIAL)


def random_sampler(problem: SearchProblem, seed: int) -> optuna.samplers.RandomSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def nsga3_sampler(problem: SearchProblem, seed: int) -> optuna.samplers.NSGAIIISampler:
    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=NSGA3_POPULATION)
