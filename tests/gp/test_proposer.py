"""GPProposer: finds known optima of synthetic accuracy functions faster than random search, and honours
the ask/tell contract (no repeats with pending trials, determinism, exhaustion, the initial-design rule)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from archsearch.gp.acquisition import (
    CandidatesExhausted,
    GPProposer,
    expected_improvement,
)
from archsearch.gp.surrogate import GPSurrogate
from archsearch.model.space import FactorSpace

SPACE = FactorSpace.default("v2")
GRID = list(SPACE.grid())
X = SPACE.encode(GRID)
SEEDS = range(5)
MAX_EVALUATIONS = 80


def physical(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Encoded rows back to resolution, width, mv2_depth, vit_depth."""
    lows = np.array([r.min for r in SPACE.ranges])
    spans = np.array([r.max - r.min for r in SPACE.ranges])
    return tuple((lows + x * spans).T)


def macs(x: np.ndarray) -> np.ndarray:
    """A MAC-like cost (relative to 256 px, width 1): quadratic in resolution and width."""
    r, w, m, a = physical(x)
    return (r / 256) ** 2 * w**2 * (0.6 + 0.25 * m + 0.15 * a)


def bowl(x: np.ndarray) -> np.ndarray:
    """Quadratic bowl with an interior optimum, vit_depth irrelevant."""
    centre = np.array([4 / 6, 5 / 14, 2 / 6, 0.5])
    return -((np.array([1.0, 2.0, 0.5, 0.0]) * (x - centre) ** 2).sum(axis=1))


def two_bumps(x: np.ndarray) -> np.ndarray:
    """Two Gaussian bumps of different heights: a local optimum to escape."""
    high, low = np.array([0.2, 0.8, 0.3, 0.6]), np.array([0.8, 0.3, 0.7, 0.2])
    return np.exp(-((x - high) ** 2).sum(axis=1) / 0.08) + 0.8 * np.exp(-((x - low) ** 2).sum(axis=1) / 0.05)


def saturating(x: np.ndarray) -> np.ndarray:
    """Accuracy-like: grows and saturates with every factor (too many attention layers hurt a little)."""
    r, w, m, a = physical(x)
    gaps = 0.15 * np.exp(-r / 150) + 0.25 * np.exp(-1.5 * w) + 0.05 * np.exp(-m) + 0.04 * np.exp(-2 * a)
    return 0.9 - gaps - 0.01 * (a - 1) ** 2


def subset(seed: int, n: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(len(GRID), n, replace=False))


def under_budget(budget: float, n: int) -> np.ndarray:
    """The real setting: only configs under a MAC budget are candidates (a random ``n`` of them)."""
    fits = np.flatnonzero(macs(X) <= budget)
    return np.sort(np.random.default_rng(7).choice(fits, n, replace=False))


CASES: dict[str, tuple[Callable, np.ndarray, float | None]] = {
    "bowl": (bowl, subset(11, 1000), None),
    "two_bumps": (two_bumps, subset(12, 1000), None),
    "saturating_under_budget": (saturating, under_budget(1.0, 1500), 1.0),
}


def evaluations_to_optimum(objective: Callable, index: np.ndarray, budget: float | None, seed: int) -> int:
    """Trials the GP proposer needs to train the best candidate (``MAX_EVALUATIONS + 1`` if never)."""
    candidates = [GRID[i] for i in index]
    values = objective(X[index])
    costs = macs(X[index]) if budget is not None else None
    accuracy = dict(zip(candidates, values))
    proposer = GPProposer(SPACE, candidates, costs=costs, budget=budget, seed=seed)
    observed: list = []
    for trial in range(1, MAX_EVALUATIONS + 1):
        config = proposer.ask(observed)
        observed.append((config, accuracy[config]))
        if accuracy[config] >= values.max() - 1e-12:
            return trial
    return MAX_EVALUATIONS + 1


def random_evaluations_to_optimum(objective: Callable, index: np.ndarray, seed: int) -> int:
    """Random search: the candidates in a shuffled order; trials until the best one comes up."""
    values = objective(X[index])[np.random.default_rng(seed).permutation(len(index))]
    return int(np.flatnonzero(values >= values.max() - 1e-12)[0]) + 1


@pytest.mark.parametrize("name", list(CASES))
def test_finds_the_optimum_faster_than_random_search(name: str) -> None:
    objective, index, budget = CASES[name]
    gp = [evaluations_to_optimum(objective, index, budget, seed) for seed in SEEDS]
    rnd = [random_evaluations_to_optimum(objective, index, seed) for seed in SEEDS]
    print(f"{name}: {len(index)} candidates; evaluations to optimum GP {gp} (mean {np.mean(gp):.1f}), "
          f"random {rnd} (mean {np.mean(rnd):.1f})")
    assert max(gp) <= MAX_EVALUATIONS  # every seed found the optimum
    assert np.mean(gp) < 0.25 * np.mean(rnd)


def make_proposer(seed: int = 0, n: int = 600, **kwargs) -> tuple[GPProposer, dict]:
    index = subset(21, n)
    candidates = [GRID[i] for i in index]
    return GPProposer(SPACE, candidates, seed=seed, **kwargs), dict(zip(candidates, bowl(X[index])))


def test_concurrent_asks_never_repeat() -> None:
    """Three workers: every ask sees the finished trials and the ones still training."""
    proposer, accuracy = make_proposer(n_initial=5)
    observed: list = []
    pending: list = []
    proposed = []
    for step in range(24):
        config = proposer.ask(observed, pending)
        assert config not in pending and config not in {c for c, _ in observed}
        proposed.append(config)
        pending.append(config)
        if len(pending) == 3:  # the oldest worker finishes
            done = pending.pop(0)
            observed.append((done, accuracy[done]))
    assert len(set(proposed)) == len(proposed)
    assert isinstance(proposer.surrogate, GPSurrogate)


def test_pending_fantasy_pushes_the_next_proposal_away() -> None:
    """A pending trial is fantasised at the mean accuracy, so the next ask moves away from it: farther
    than the runner-up that merely excluding the pending config would give."""
    proposer, accuracy = make_proposer(n_initial=5)
    observed: list = []
    for _ in range(12):
        config = proposer.ask(observed)
        observed.append((config, accuracy[config]))
    first = proposer.ask(observed)
    second = proposer.ask(observed, pending=[first])
    assert second != first
    assert proposer.ask(observed, pending=[first]) == second
    free = [c for c in proposer.candidates if c not in {first, *(c for c, _ in observed)}]
    mean, std = proposer.surrogate.predict(free)  # fitted on the real observations only
    runner_up = free[int(np.argmax(expected_improvement(mean, std, max(a for _, a in observed))))]
    distance = lambda c: float(np.linalg.norm(SPACE.encode([c])[0] - SPACE.encode([first])[0]))  # noqa: E731
    assert distance(second) > distance(runner_up)


def run(proposer: GPProposer, accuracy: dict, n: int) -> list:
    observed: list = []
    for _ in range(n):
        config = proposer.ask(observed)
        observed.append((config, accuracy[config]))
    return [c for c, _ in observed]


def test_deterministic_per_seed() -> None:
    a = run(*make_proposer(seed=3, n_initial=4), 10)
    b = run(*make_proposer(seed=3, n_initial=4), 10)
    c = run(*make_proposer(seed=4, n_initial=4), 10)
    assert a == b
    assert a != c


def test_exhaustion_raises() -> None:
    candidates = GRID[:3]
    proposer = GPProposer(SPACE, candidates, n_initial=1)
    observed = [(candidates[0], 0.5), (candidates[1], 0.6)]
    assert proposer.ask(observed) == candidates[2]
    with pytest.raises(CandidatesExhausted):
        proposer.ask(observed, pending=[candidates[2]])
    with pytest.raises(CandidatesExhausted):
        proposer.ask([(c, 0.5) for c in candidates])


def min_pairwise_distance(x: np.ndarray) -> float:
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(x), 1)].min())


def test_initial_design_near_budget_and_space_filling() -> None:
    _, index, budget = CASES["saturating_under_budget"]
    candidates = [GRID[i] for i in index]
    costs = macs(X[index])
    proposer = GPProposer(SPACE, candidates, costs=costs, budget=budget, n_initial=8, seed=0)
    design = run(proposer, dict(zip(candidates, saturating(X[index]))), 8)
    cost_of = dict(zip(candidates, costs))
    assert all(cost_of[c] >= 0.5 * budget for c in design)
    assert proposer.surrogate is None  # no GP fitted during the initial design
    # maximin beats random picks from the same pool at spreading points out
    pool = np.flatnonzero(costs >= 0.5 * budget)
    rng = np.random.default_rng(0)
    random_spread = [min_pairwise_distance(X[index[rng.choice(pool, 8, replace=False)]]) for _ in range(50)]
    assert min_pairwise_distance(SPACE.encode(design)) > np.percentile(random_spread, 90)


def test_rejects_bad_setup() -> None:
    with pytest.raises(ValueError):
        GPProposer(SPACE, [])
    with pytest.raises(ValueError):
        GPProposer(SPACE, [GRID[0], GRID[0]])
    with pytest.raises(ValueError):
        GPProposer(SPACE, GRID[:3], costs=[1.0, 2.0])
    with pytest.raises(ValueError):
        GPProposer(SPACE, GRID[:3], n_initial=0)
