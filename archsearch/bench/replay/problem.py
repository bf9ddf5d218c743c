"""What a replay searches: the rung tables, the configs every rung scored within the budget, what a job costs,
how noisy a score is, and the truth a search's pick is judged by.

* **Rungs.** One table per rung, cheapest first, each possibly with tables of other training seeds
  (``Rung``: one profile, seeds pooled per network).
* **Points.** The configs within the budget that succeeded at every rung (at least one seed each): every
  strategy searches the same set, whether it uses one rung or all.
* **Truth.** A config's *true* accuracy is its top-rung mean over the seeds there; the table best is the
  point with the highest one (ties: the cheaper, then the earlier).
* **Cost** of a job, in top-rung-equivalent evaluations (``COST_MODELS``): ``images`` -- the images its
  training sees, epochs x training images a class x resolution scale^2 (pixels, where rungs differ in
  scale), over the top rung's; ``wall`` -- the rung's median training wall time over the points (all seeds),
  over the top rung's (for profiles that train on every image, whose count the tables do not record). A
  promoted job is charged its rung's full cost even where the ladder continues from the rung below (which
  ``archsearch run`` does for ``NAME-eK,NAME``): an upper bound on what such a ladder spends.
* **Noise** of a rung (``Rung.noise``): the profile's measured prior (``fidelity.prior_noise``), updated with
  the pooled seed-to-seed variance of the configs its tables scored at two or more seeds
  (``fidelity.rung_noise``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...model.config import ArchConfig, ConfigError
from ...model.cost import closed_form_cost
from ...model.space import FactorSpace
from ...search import BudgetError
from ...search.noise import Noise, rung_noise
from ...train.recipe import Profile
from ..table import grid_width_baseline
from ..tables import BenchTable, check_group

COST_MODELS = ("images", "wall")


@dataclass(frozen=True)
class Rung:
    """One fidelity of a replay: its tables (one per training seed), their scores pooled per network."""

    profile: Profile
    tables: tuple[BenchTable, ...]
    configs: dict[tuple, ArchConfig]
    scores: dict[tuple, dict[int, float]]  # network -> {table seed: top-1}, successful rows only
    wall_s: dict[tuple, list[float]]
    noise: Noise

    @classmethod
    def of(cls, tables: Sequence[BenchTable], option: str = "--table") -> Rung:
        check_group(tables, option)
        profile = tables[0].profile
        if profile is None:
            raise ConfigError(f"{option}: {tables[0].path}: profile {tables[0].fidelity.get('name')!r} is not a known "
                              "one and the table has no settings file")
        configs: dict[tuple, ArchConfig] = {}
        scores: dict[tuple, dict[int, float]] = {}
        wall: dict[tuple, list[float]] = {}
        for t in tables:
            for config, top1, seconds in zip(t.configs, t.top1, t.wall_s):
                key = config.network_key()
                configs.setdefault(key, config)
                if top1 is not None:
                    scores.setdefault(key, {})[t.seed] = top1
                if seconds is not None:
                    wall.setdefault(key, []).append(seconds)
        noise = rung_noise(profile, [list(s.values()) for s in scores.values()])
        return cls(profile, tuple(tables), configs, scores, wall, noise)

    @property
    def name(self) -> str:
        return self.profile.name

    def mean(self, key: tuple) -> float:
        return float(np.mean(list(self.scores[key].values())))

    def images_seen(self) -> float | None:
        """Pixels seen in training, in units of one image a class at full scale (None: every image)."""
        p = self.profile
        return None if p.train_per_class is None else p.last_epoch * p.train_per_class * p.resolution_scale**2


@dataclass(frozen=True)
class Problem:
    """The rungs (cheapest first), the budget, its points and their costs, and the cost of a job per rung."""

    rungs: tuple[Rung, ...]
    budget: int
    space: FactorSpace
    space_dict: dict
    points: list[ArchConfig]
    costs: list[int]
    weights: tuple[float, ...]  # cost of one job at each rung, in top-rung evaluations
    cost_model: str
    left_out: int  # configs within the budget that some rung did not score (or where every seed failed)
    best: tuple[ArchConfig, float]
    baseline: tuple[ArchConfig, float | None] | None  # the grid-width baseline and its true accuracy, if a point

    @property
    def top(self) -> Rung:
        return self.rungs[-1]

    def true(self, config: ArchConfig) -> float:
        return self.top.mean(config.network_key())

    @classmethod
    def build(cls, rungs: Sequence[Rung], budget: int, cost_model: str = "images") -> Problem:
        if cost_model not in COST_MODELS:
            raise ConfigError(f"--cost: {cost_model!r} is not one of {', '.join(COST_MODELS)}")
        rungs = tuple(rungs)
        first = rungs[-1].tables[0]
        for rung in rungs:
            for t in rung.tables:
                if t.space_dict != first.space_dict:
                    raise ConfigError(f"--table: {t.path} and {first.path} were sampled from other factor spaces")
        names = [r.name for r in rungs]
        if len(set(names)) != len(names):
            raise ConfigError(f"--table: two rungs have the same profile ({', '.join(names)}); give seed tables "
                              "with --seed-table")
        within = {k: c for rung in rungs for k, c in rung.configs.items() if closed_form_cost(c).macs <= budget}
        if not within:
            cheapest = min((c for rung in rungs for c in rung.configs.values()), key=lambda c: closed_form_cost(c).macs)
            raise BudgetError(f"--mac-budget: no config of the tables fits {budget / 1e6:.1f}M; the cheapest is "
                              f"{cheapest.id} at {closed_form_cost(cheapest).macs / 1e6:.1f}M MACs")
        keys = [k for k in rungs[-1].configs if k in within and all(k in r.scores for r in rungs)]
        if not keys:
            raise BudgetError(f"--mac-budget: no config within {budget / 1e6:.1f}M was scored at every rung")
        points = [within[k] for k in keys]
        costs = [closed_form_cost(c).macs for c in points]
        weights = job_weights(rungs, keys, cost_model)
        order = {k: i for i, k in enumerate(keys)}
        top = rungs[-1]
        best_key = min(keys, key=lambda k: (-top.mean(k), costs[order[k]], order[k]))
        base = grid_width_baseline(first.space, budget)
        baseline = None
        if base is not None:
            key = base.network_key()
            baseline = (base, top.mean(key) if key in order else None)
        return cls(rungs, budget, first.space, first.space_dict, points, costs, weights, cost_model,
                   len(within) - len(keys), (within[best_key], top.mean(best_key)), baseline)


def job_weights(rungs: Sequence[Rung], keys: Sequence[tuple], model: str) -> tuple[float, ...]:
    """The cost of one job at each rung relative to the top rung's (module docstring)."""
    if model == "images":
        seen = [r.images_seen() for r in rungs]
        if None in seen:
            name = rungs[seen.index(None)].name
            raise ConfigError(f"--cost images: profile {name!r} trains on every image, whose count the tables do not "
                              "record; use --cost wall")
        return tuple(s / seen[-1] for s in seen)
    medians = []
    for r in rungs:
        times = [s for k in keys for s in r.wall_s.get(k, [])]
        if not times:
            raise ConfigError(f"--cost wall: the {r.name} tables record no wall time for these configs")
        medians.append(float(np.median(times)))
    return tuple(m / medians[-1] for m in medians)
