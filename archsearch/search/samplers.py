"""Search strategies as Optuna samplers: the GP proposer behind Optuna's sampler interface, and Optuna's own.

A sampler only proposes rung-0 configs (``search.jobs``: promotions and baselines are planned, not sampled).
``GPSampler`` reads every job of the study (``search.jobs.Ledger``): finished ones at every rung are the
observations, with each rung's noise (``fidelity.rung_noise``: the measured prior, updated by the study's
seed repeats); running and queued ones are pending. Because the study lives in shared storage, every worker
sees every other worker's jobs. ``design`` is the same proposer without the GP (its space-filling design
all the way): the baseline that shows what the GP adds.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from ..model.config import ArchConfig
from .fidelity import Ladder, Noise, rung_noise
from ..gp.proposer import GPProposer
from ..model.space import FactorSpace
from .study import STRATEGIES, config_params, distributions

N_INITIAL = 4  # space-filling design before the GP takes over


class GPSampler(optuna.samplers.BaseSampler):
    """Augmented expected improvement of a (multi-fidelity) Matern-5/2 GP over the feasible grid points."""

    def __init__(self, space: FactorSpace, candidates: list[ArchConfig], costs: list[int], budget: int,
                 ladder: Ladder, n_initial: int = N_INITIAL, seed: int = 0):
        self.space = space
        self.ladder = ladder
        self.proposer = GPProposer(space, candidates, costs=costs, budget=budget, n_initial=n_initial, seed=seed,
                                   fidelities=len(ladder.rungs))
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return distributions(self.space)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        from .jobs import Ledger

        if trial.system_attrs.get("fixed_params") or trial.params:  # a queued job brings its own
            return {}
        ledger = Ledger(t for t in study.get_trials(deepcopy=False) if t.number != trial.number)
        observed = [(e.job.config, e.accuracy, e.job.rung) for e in ledger.entries if e.state == "done"]
        pending = [e.job.config for e in ledger.busy()]
        failed = [e.job.config for e in ledger.entries if e.state == "failed"]
        noise = [n.std for n in study_noise(ledger, self.ladder)]
        return config_params(self.proposer.ask(observed, pending, failed, noise), self.space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


def study_noise(ledger, ladder: Ladder) -> list[Noise]:
    """Each rung's noise: the profile's measured prior, updated with the seed repeats done at that rung."""
    return [rung_noise(profile, [scores for _, scores, _ in ledger.scores(rung).values()])
            for rung, profile in enumerate(ladder.rungs)]


def make_sampler(strategy: str, space: FactorSpace, candidates: list[ArchConfig], costs: list[int],
                 budget: int, ladder: Ladder, seed: int) -> optuna.samplers.BaseSampler:
    if strategy == "gp":
        return GPSampler(space, candidates, costs, budget, ladder, seed=seed)
    if strategy == "design":
        return GPSampler(space, candidates, costs, budget, ladder, n_initial=len(candidates) + 1, seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_INITIAL)
    if strategy == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=8)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
