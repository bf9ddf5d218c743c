"""One study's search, assembled once: settings -> candidates -> sampler -> study -> plan -> the loop.

``archsearch run`` and ``archsearch worker``, the replays and the tests all search through a ``Session``, so
they search the same way: the feasible grid is costed once, the plan (baselines included) is built once,
and the sampler gets the study's seed unless a worker brings its own stream.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage

from ..model.config import ArchConfig
from .baselines import baselines_for
from .budget import feasible_grid
from .family import FamilyPlan
from .jobs import Ledger, Plan
from .loop import Evaluator, SearchProgress, run_trials
from .settings import StudySettings
from .strategies import make_sampler
from .study import ResultCache, make_storage, open_study


def plan_for(settings: StudySettings) -> Plan:
    """The plan a study's settings define (its baselines are a pure function of the space and budgets); a
    family's (several MAC budgets) is a ``FamilyPlan`` of one plan per budget."""
    space = settings.factor_space()
    family = tuple(baselines_for(space, budget, limit) for budget, limit in zip(settings.budgets,
                                                                                 settings.member_limits()))
    if len(family) == 1:
        return Plan(settings.fidelity_ladder(), settings.trials, family[0], settings.seed, space, settings.data)
    return FamilyPlan(settings.fidelity_ladder(), settings.trials, family[-1], settings.seed, space, settings.data,
                      family=family)


class Session:
    """A study's search. The candidates and the plan are built with the session, the sampler and the study on
    first use of ``study`` (``archsearch run`` takes the study's lock first).

    ``sampler_seed``: a worker's own random stream (default: the study's seed). A replay searches its tables,
    not the grid: it gives its ``candidates`` (configs and their MACs), a ``plan`` without baselines, and
    ``wrap_sampler`` to move proposals onto the tables; ``archsearch run`` gives the candidates it costed
    already."""

    def __init__(self, settings: StudySettings, name: str, storage: str | BaseStorage, *,
                 sampler_seed: int | None = None, candidates: tuple[list[ArchConfig], list[int]] | None = None,
                 plan: Plan | None = None, wrap_sampler: Callable[[BaseSampler], BaseSampler] | None = None):
        self.settings, self.name, self.storage = settings, name, storage
        if candidates is None:
            feasible = feasible_grid(settings.factor_space(), settings.mac_budget, settings.latency_limit())
            candidates = (feasible.configs, feasible.macs)
        self.candidates, self.costs = candidates
        self.plan = plan if plan is not None else plan_for(settings)
        self.sampler_seed = settings.seed if sampler_seed is None else sampler_seed
        self.wrap_sampler = wrap_sampler

    @cached_property
    def study(self) -> optuna.Study:
        """The study, created or resumed (other settings are refused) with the strategy's sampler; resumed
        with another trial count, it stores the new one: how far to go."""
        storage = make_storage(self.storage) if isinstance(self.storage, str) else self.storage
        s = self.settings
        sampler = make_sampler(s.strategy, s.factor_space(), self.candidates, self.costs, s.mac_budget,
                               s.fidelity_ladder(), self.sampler_seed, s.data, s.budgets, s.member_limits())
        if self.wrap_sampler is not None:
            sampler = self.wrap_sampler(sampler)
        study = open_study(self.name, storage, s, sampler)
        stored = study.user_attrs["settings"]
        if stored["trials"] != self.settings.trials:
            study.set_user_attr("settings", {**stored, "trials": self.settings.trials})
        return study

    def run(self, evaluator: Evaluator, cache: ResultCache | None = None, progress: bool = True,
            max_trials: int | None = None, poll_s: float = 2.0, heartbeats: bool = True,
            replan: Callable[[Ledger], Plan] | None = None) -> SearchProgress:
        """Train the due jobs (``loop.run_trials``) until the plan is done or this process has trained
        ``max_trials``; ``heartbeats`` off only where no other process can see the study."""
        return run_trials(self.study, self.settings, self.plan, evaluator, cache, progress=progress,
                          max_trials=max_trials, poll_s=poll_s, heartbeats=heartbeats, replan=replan)
