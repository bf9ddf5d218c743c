"""A family's plan: one study, several MAC budgets (``run --mac-budget 75M,150M,300M,600M``).

Each budget has the plan a single-budget study of it would have (``FamilyPlan.members``: its baselines, its
finalists chosen among the screened networks that fit it), and the family trains the union of their jobs,
each once: a network trained for one budget serves every budget it fits (the screening GP sees it, and at
the deciding rung it is a candidate of every verdict it fits). What the members cannot each decide alone:

* proposals: ``trials`` in all, the strategy spreading them over the budgets (the GP sampler takes the
  budgets in turn, ``strategies.gp``);
* promotions between screening rungs: the best ``promote`` fraction of each budget's *band* (the networks
  above the next cheaper budget, up to this one), so every budget keeps evidence near its own cost and the
  promotions stay a ``promote`` fraction of all screened networks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from .baselines import Baselines
from .jobs import Job, Ledger, Plan
from .networks import by_score


def _union(jobs: Iterable[Job]) -> list[Job]:
    """Each job once (the first member that asks for it gives its baseline kinds), in the members' order."""
    out: dict[tuple, Job] = {}
    for job in jobs:
        out.setdefault(job.key, job)
    return list(out.values())


@dataclass(frozen=True)
class FamilyPlan(Plan):
    """The plans of several budgets as one; ``baselines`` is the largest budget's, ``family`` every budget's
    baselines, cheapest first."""

    family: tuple[Baselines, ...] = ()

    @cached_property
    def members(self) -> tuple[Plan, ...]:
        return tuple(Plan(self.ladder, self.trials, b, self.seed, self.space, self.data) for b in self.family)

    @property
    def budgets(self) -> tuple[int, ...]:
        return tuple(b.budget for b in self.family)

    def _baseline_screening(self) -> list[Job]:
        return _union(j for m in self.members for j in m._baseline_screening())

    def _fixed_top_baselines(self) -> list[Job]:
        return _union(j for m in self.members for j in m._fixed_top_baselines())

    def _top_jobs(self, ledger: Ledger) -> list[Job]:
        return _union(j for m in self.members for j in m._top_jobs(ledger))

    def _promotions(self, ledger: Ledger, rung: int) -> list[Job]:
        if self.ladder.deciding and rung + 1 == self.ladder.top:
            return _union(j for m in self.members for j in m._finalists(ledger))
        networks = ledger.networks(rung, self.ladder.rungs[rung].name)
        screened = [networks[k] for k in ledger.search_networks(rung, ("done",))]
        seeds = self.top_seeds if rung + 1 == self.ladder.top else [self.seed]
        jobs, floor = [], 0
        for budget in self.budgets:
            band = [n for n in screened if floor < n.macs <= budget]
            jobs += [Job(n.config, rung + 1, s) for n in by_score(band)[: self.ladder.promoted(len(band))]
                     for s in seeds]
            floor = budget
        return jobs
