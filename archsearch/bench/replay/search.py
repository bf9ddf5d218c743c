"""One replayed search: a real ``search.run_trials`` on an in-memory study, answered from the tables.

* **Strategies** (``STRATEGIES``): ``gp``, ``design``, ``tpe``, ``random`` and ``nsga3`` search the top rung
  alone (single fidelity); an ``mf-`` prefix (``mf-gp``, ``mf-design``, ``mf-tpe``, ``mf-random``) runs the
  same strategy over every rung: successive halving up the ladder (``search.jobs.Plan``), and for ``mf-gp``
  the multi-fidelity GP over every rung's jobs. The GP and the design get the problem's points as their
  candidates; TPE, random and NSGA-III propose on the whole factor grid and ``SnapToTable`` moves a proposal
  within the budget to the nearest point not yet evaluated (one over the budget is skipped by
  ``run_trials`` as infeasible, as in ``run``). The plan has no baselines: the hand-scaling rules' configs
  are off the grid, not in the tables.
* **Noise** (``TableEvaluator``): with two or more seeds of a config at a rung, the job with the k-th seed of
  the search draws the k-th table seed of a permutation fixed by (replay seed, config, rung), cycling when
  the search asks for more seeds than the tables hold; with one seed, the score plus Gaussian noise of the
  rung's std (``Rung.noise``), drawn from (replay seed, config, rung, k). Without noise every job scores the
  config's mean over the table seeds.
* **Picks.** What a search would report is the judge's winner (``results.judge``: the GP posterior mean at the
  highest rung reached, as ``run``'s summary decides); its quality is the winner's *true* accuracy (top-rung mean
  over seeds), never its noisy score. A search is judged at a few costs: where its plan is a prefix of a
  longer one (one rung, one top seed: it only proposes), at the prefix of the longest search that fits the
  cost; otherwise (rungs, repeats) by a search of its own with as many proposals as the cost buys
  (``trials_for``), since a successive-halving search that knows its budget promotes earlier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from ...model.config import ArchConfig, ConfigError
from ...model.cost import closed_form_cost
from ...model.space import FactorSpace
from ...results.judge import judge
from ...search import BudgetError, Job, Ledger, Plan
from ...search.baselines import KINDS, Baselines
from ...search.fidelity import Ladder
from ...search.params import config_from_params, config_params, distributions
from ...search.session import Session
from ...search.settings import StudySettings
from ...search.strategies import STRATEGIES as REGISTRY
from ...search.strategies import get_strategy
from ...train.recipe import train_resolution
from .problem import Problem

MULTI = "mf-"
# Every registered strategy alone, then over every rung those that can climb a ladder.
STRATEGIES = (*REGISTRY, *(MULTI + s.name for s in REGISTRY.values() if not s.one_rung))
# Compared by default: each that can climb a ladder, followed by its mf- search where it models every rung.
DEFAULT_STRATEGIES = tuple(name for s in REGISTRY.values() if not s.one_rung
                           for name in (s.name, *([MULTI + s.name] if s.models_rungs else [])))
NO_BASELINES = {k: "a replay trains no baseline (the hand-scaling rules' configs are not in the tables)" for k in KINDS}


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy: {name!r} is not one of {', '.join(STRATEGIES)}")
    return name


@dataclass(frozen=True)
class Setup:
    """How every search of a replay runs: the ladder's promoted fraction and top seeds, and the noise."""

    promote: float = 1 / 3
    top_seeds: int = 1
    noisy: bool = True


def ladder_for(problem: Problem, strategy: str, setup: Setup) -> tuple[Ladder, tuple[int, ...]]:
    """The strategy's ladder and, for each of its rungs, the problem rung that answers it."""
    index = tuple(range(len(problem.rungs))) if strategy.startswith(MULTI) else (len(problem.rungs) - 1,)
    return Ladder(tuple(problem.rungs[i].profile for i in index), setup.promote, setup.top_seeds), index


def planned_cost(n: int, weights: Sequence[float], ladder: Ladder) -> float:
    """What a plan of ``n`` proposals spends when every job succeeds (``search.jobs.Plan``)."""
    if ladder.top == 0:
        return weights[0] * (n + ladder.promoted(n) * (ladder.top_seeds - 1))
    cost, count = 0.0, n
    for rung, weight in enumerate(weights):
        cost += weight * count * (ladder.top_seeds if rung == ladder.top else 1)
        count = ladder.promoted(count)
    return cost


def trials_for(cost: float, weights: Sequence[float], ladder: Ladder, most: int) -> int | None:
    """The most proposals (at most ``most``) whose plan fits ``cost``; None if not even one does."""
    fits = [n for n in range(1, most + 1) if planned_cost(n, weights, ladder) <= cost + 1e-9]
    return max(fits) if fits else None


def _rng(*key: object) -> np.random.Generator:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class TableEvaluator:
    """The ``search.Evaluator`` of a replay: a job's score drawn from its rung's tables; never trains."""

    def __init__(self, problem: Problem, ladder: Ladder, rungs: tuple[int, ...], replay_seed: int, noisy: bool):
        self.problem, self.ladder, self.rungs = problem, ladder, rungs
        self.replay_seed, self.noisy = replay_seed, noisy
        self.calls: list[Job] = []

    def context(self) -> dict:
        return {"data": "replay", "tables": [str(t.path) for r in self.problem.rungs for t in r.tables]}

    def trained_resolution(self, job: Job) -> int:
        return train_resolution(job.config, self.ladder.rungs[job.rung].resolution_scale)

    def latency(self, job: Job) -> None:
        return None  # a replay scores from tables: nothing to time

    def draw(self, job: Job) -> tuple[float, int | None]:
        """(score, table seed it came from; None: the mean over seeds, noise off)."""
        rung = self.problem.rungs[self.rungs[job.rung]]
        key = job.config.network_key()
        if key not in rung.scores:
            raise LookupError(f"{job.config.id} is not scored in the {rung.name} tables")
        by_seed = rung.scores[key]
        if not self.noisy:
            return rung.mean(key), None
        k = job.seed - self.replay_seed  # the search's k-th seed of this job (plans start at the replay seed)
        seeds = sorted(by_seed)
        if len(seeds) > 1:
            order = _rng(self.replay_seed, job.config.id, rung.name).permutation(seeds)
            seed = int(order[k % len(seeds)])
            return by_seed[seed], seed
        noise = rung.noise.std * _rng(self.replay_seed, job.config.id, rung.name, k).standard_normal()
        return float(np.clip(by_seed[seeds[0]] + noise, 0.0, 1.0)), seeds[0]

    def __call__(self, job: Job) -> dict:
        self.calls.append(job)
        score, seed = self.draw(job)
        return {"status": "ok", "reason": None, "top1": score, "top5": None, "seed": job.seed, "table_seed": seed,
                "fidelity": self.ladder.rungs[job.rung].to_dict(), "dataset": "replay",
                "resolution": self.trained_resolution(job), "wall_s": 0.0}


class SnapToTable(optuna.samplers.BaseSampler):
    """A strategy's proposals within the budget moved to the nearest point not yet evaluated in the search
    (Euclidean, encoded cube; ties: the first in table order; the nearest of all once every one is taken).
    Not yet evaluated: a table holds only tens of points per budget, so a concentrating strategy (TPE) would
    otherwise stall on free repeats. The study stores the snapped point, so the strategy learns from it."""

    def __init__(self, base: optuna.samplers.BaseSampler, space: FactorSpace, points: Sequence[ArchConfig],
                 budget: int):
        self.base, self.space, self.points, self.budget = base, space, list(points), budget
        self._x = space.encode(self.points)
        self._dists = distributions(space)

    def snap(self, config: ArchConfig, taken: set[tuple] = frozenset()) -> ArchConfig:
        if closed_form_cost(config).macs > self.budget:
            return config  # over budget: run_trials skips it, as in a real run
        d = ((self._x - self.space.encode([config])) ** 2).sum(1)
        free = np.array([p.network_key() not in taken for p in self.points])
        if free.any():
            d = np.where(free, d, np.inf)
        return self.points[int(np.argmin(d))]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._dists

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.system_attrs.get("fixed_params"):  # a queued job brings its own
            return {}
        inner = self.base.infer_relative_search_space(study, trial)
        params = dict(self.base.sample_relative(study, trial, inner)) if inner else {}
        for name, dist in self._dists.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, dist)
        taken = Ledger(t for t in study.get_trials(deepcopy=False) if t.number != trial.number).search_networks(0)
        return config_params(self.snap(config_from_params(params, self.space), set(taken)), self.space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


# ---- one search, and what it picks ------------------------------------------------------------------------
@dataclass(frozen=True)
class Logged:
    """One job of a search: what it scored, what it really is, and the cost spent once it was done."""

    config_id: str
    rung: int  # the problem's rung (0: cheapest)
    score: float | None
    table_seed: int | None
    true: float
    cost: float


@dataclass(frozen=True)
class Pick:
    """What a search decides once it has spent at most ``cost``: the winner, and its true accuracy."""

    cost: float
    trials: int | None  # rung-0 proposals of the search decided (None: the cost buys no search)
    spent: float = 0.0
    config_id: str | None = None
    true: float | None = None
    rung: int | None = None  # the problem rung it was decided at
    is_best: bool = False


@dataclass
class Search:
    """A strategy's search at one replay seed: its jobs (the longest run) and its pick at each cost."""

    strategy: str
    seed: int
    jobs: list[Logged] = field(default_factory=list)
    picks: list[Pick] = field(default_factory=list)
    infeasible: int = 0  # proposals over the budget (skipped)
    repeats: int = 0  # proposals of a network already evaluated (free)
    stuck: bool = False

    def cost_to(self, target: float, top: int) -> float | None:
        """Cost spent when a config with true accuracy >= ``target`` was first scored at the top rung."""
        return next((j.cost for j in self.jobs if j.rung == top and j.true >= target - 1e-12), None)


@dataclass
class _Run:
    study: optuna.Study
    settings: StudySettings
    plan: Plan
    weights: tuple[float, ...]  # per ladder rung
    index: tuple[int, ...]
    stuck: bool

    def trials(self) -> list[FrozenTrial]:
        return sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number)


def _run(problem: Problem, strategy: str, seed: int, trials: int, setup: Setup) -> _Run:
    ladder, index = ladder_for(problem, strategy, setup)
    base = strategy.removeprefix(MULTI)
    settings = StudySettings(space=problem.space_dict, mac_budget=problem.budget, ladder=ladder.to_dict(),
                             data="replay", strategy=base, seed=seed, trials=trials)
    snap = None if get_strategy(base).within_budget else (
        lambda sampler: SnapToTable(sampler, problem.space, problem.points, problem.budget))
    session = Session(settings, f"replay-{strategy}-s{seed}", optuna.storages.InMemoryStorage(),
                      candidates=(problem.points, problem.costs), wrap_sampler=snap,
                      plan=Plan(ladder, trials, Baselines(problem.budget, None, (), None, NO_BASELINES), seed))
    stuck = False
    try:
        session.run(TableEvaluator(problem, ladder, index, seed, setup.noisy), progress=False, poll_s=0.0,
                    heartbeats=False)
    except BudgetError:  # MAX_WASTED_STREAK proposals in a row over the budget or already evaluated
        stuck = True
    return _Run(session.study, settings, session.plan, tuple(problem.weights[i] for i in index), index, stuck)


def _counted(trial: FrozenTrial) -> Job | None:
    """The job a finished trial spent training on (None: pruned, or not a job)."""
    if trial.state not in (TrialState.COMPLETE, TrialState.FAIL):
        return None
    return Job.from_attrs(trial.user_attrs)


def _prefix(run: _Run, cost: float) -> tuple[list[FrozenTrial], float]:
    """The trials of ``run`` until its jobs have spent ``cost``, and what they spent."""
    out, spent = [], 0.0
    for t in run.trials():
        job = _counted(t)
        if job is not None:
            if spent + run.weights[job.rung] > cost + 1e-9:
                break
            spent += run.weights[job.rung]
        out.append(t)
    return out, spent


def _pick(problem: Problem, run: _Run, cost: float, trials: int, prefix: list[FrozenTrial], spent: float) -> Pick:
    ledger = Ledger(prefix)
    decision = judge(ledger, run.plan, run.settings).decision
    if decision.winner is None:
        return Pick(cost, trials, spent)
    config = decision.winner.config
    return Pick(cost, trials, spent, config.id, problem.true(config), run.index[decision.rung],
                config.network_key() == problem.best[0].network_key())


def _log(problem: Problem, run: _Run) -> list[Logged]:
    out, spent = [], 0.0
    for t in run.trials():
        job = _counted(t)
        if job is None:
            continue
        spent += run.weights[job.rung]
        record = t.user_attrs.get("record", {})
        out.append(Logged(job.config.id, run.index[job.rung], t.user_attrs.get("accuracy"), record.get("table_seed"),
                          problem.true(job.config), spent))
    return out


def search(problem: Problem, strategy: str, seed: int, costs: Sequence[float], setup: Setup) -> Search:
    """``strategy``'s search at replay seed ``seed``, decided at each of ``costs`` (module docstring)."""
    ladder, index = ladder_for(problem, check_strategy(strategy), setup)
    weights = [problem.weights[i] for i in index]
    counts = [trials_for(c, weights, ladder, len(problem.points)) for c in costs]
    result = Search(strategy, seed)
    if not any(counts):
        result.picks = [Pick(c, None) for c in costs]
        return result
    prefix_closed = ladder.top == 0 and ladder.top_seeds == 1
    runs: dict[int, _Run] = {}
    longest = max(n for n in counts if n)
    for cost, n in zip(costs, counts):
        if n is None:
            result.picks.append(Pick(cost, None))
            continue
        size = longest if prefix_closed else n
        if size not in runs:
            runs[size] = _run(problem, strategy, seed, size, setup)
        run = runs[size]
        prefix, spent = _prefix(run, cost)
        result.picks.append(_pick(problem, run, cost, n, prefix, spent))
    run = runs[longest]
    result.jobs = _log(problem, run)
    trials = run.trials()
    result.infeasible = sum(bool(t.user_attrs.get("infeasible")) for t in trials)
    result.repeats = sum(bool(t.user_attrs.get("repeat")) for t in trials)
    result.stuck = run.stuck
    return result
