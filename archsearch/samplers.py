"""Search strategies as Optuna samplers: the GP proposer behind Optuna's sampler interface, and Optuna's own.

``GPSampler`` reads the study (completed trials as observations, running and queued ones as pending) and asks
the ``GPProposer`` for the next config over the feasible candidates. Because the study lives in shared
storage, every worker sees every other worker's running trials, so no two workers train the same config.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from .config import ArchConfig
from .proposer import GPProposer
from .space import FactorSpace
from .study import config_from_params, config_params, distributions

N_INITIAL = 4  # space-filling design before the GP takes over


class GPSampler(optuna.samplers.BaseSampler):
    """Expected improvement of a Matérn-5/2 GP over the feasible grid points (see ``proposer``)."""

    def __init__(self, space: FactorSpace, candidates: list[ArchConfig], costs: list[int], budget: int,
                 n_initial: int = N_INITIAL, seed: int = 0):
        self.space = space
        self.proposer = GPProposer(space, candidates, costs=costs, budget=budget, n_initial=n_initial, seed=seed)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return distributions(self.space)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.system_attrs.get("fixed_params") or trial.params:  # enqueued or retried: brings its own
            return {}
        observed, pending, failed = [], [], []
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number:
                continue
            if t.state == TrialState.COMPLETE and "accuracy" in t.user_attrs:
                observed.append((self._config(t.params), t.user_attrs["accuracy"]))
            elif t.state == TrialState.FAIL and t.user_attrs.get("failure"):
                failed.append(self._config(t.params))
            elif t.state == TrialState.RUNNING and set(t.params) >= set(search_space):
                pending.append(self._config(t.params))
            elif t.state == TrialState.WAITING and (queued := t.system_attrs.get("fixed_params") or t.params):
                pending.append(self._config(queued))
        return config_params(self.proposer.ask(observed, pending, failed), self.space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def _config(self, params: dict[str, Any]) -> ArchConfig:
        return config_from_params(params, self.space)


def make_sampler(strategy: str, space: FactorSpace, candidates: list[ArchConfig], costs: list[int],
                 budget: int, seed: int) -> optuna.samplers.BaseSampler:
    if strategy == "gp":
        return GPSampler(space, candidates, costs, budget, seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_INITIAL)
    if strategy == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=8)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"strategy: {strategy!r} is not one of gp, nsga3, tpe, random")
