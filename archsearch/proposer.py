"""Ask/tell Bayesian optimisation over a finite set of candidate configs (issue 4).

The candidates are the grid points that fit the MAC budget (the caller filters them with the cost model).
A proposer is stateless between asks apart from its fixed setup: every ``ask`` gets the whole history, so
several workers (or an Optuna sampler) can share one proposer and the answer depends only on the seed, the
candidates and that history.

* Initial design (fewer than ``n_initial`` observations): greedy maximin in the encoded unit cube. The
  design is drawn from the candidates that use at least ``design_fill`` of the budget (default one half),
  because accuracy grows with model size and the best configs under a MAC cap sit near the cap; the first
  point (no history) is a seeded random pick from that pool, each later one the pool candidate farthest
  from everything observed or pending (ties: seeded order). Without costs every candidate is in the pool.
* Afterwards: a ``GPSurrogate`` fitted to the observations; the candidate with the largest expected
  improvement over the best observed accuracy is returned.
* Pending trials (proposed, not finished) get a constant-liar fantasy: each is added to the GP at the
  *mean* observed accuracy, with the hyper-parameters fitted on real data only. The mean is the middle
  road between the optimistic liar (the best, which keeps workers clustered around one pending point)
  and the pessimistic one (the worst, which drives them into poor regions). Observed and pending configs
  are never proposed again; when no candidate is left ``ask`` raises ``CandidatesExhausted``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import ArchConfig
from .space import FactorSpace
from .surrogate import GPSurrogate, expected_improvement


class CandidatesExhausted(RuntimeError):
    """Every candidate has been observed or is pending: there is nothing left to propose."""


class GPProposer:
    """Proposes the next config to train from a finite candidate list (see the module docstring)."""

    def __init__(
        self,
        space: FactorSpace,
        candidates: Sequence[ArchConfig],
        costs: Sequence[float] | None = None,
        budget: float | None = None,
        n_initial: int = 10,
        seed: int = 0,
        design_fill: float = 0.5,
    ) -> None:
        self.space = space
        self.candidates = list(candidates)
        if not self.candidates:
            raise ValueError("candidates: empty; no config fits the budget?")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError("candidates: contains duplicates")
        if n_initial < 1:
            raise ValueError(f"n_initial: need at least 1, got {n_initial}")
        self.n_initial = n_initial
        self.seed = seed
        self.surrogate: GPSurrogate | None = None  # fitted by the last ask past the initial design
        self._x = space.encode(self.candidates)
        self._order = np.random.default_rng(seed).permutation(len(self.candidates))
        self._in_design = self._design_pool(costs, budget, design_fill)

    def _design_pool(self, costs: Sequence[float] | None, budget: float | None, fill: float) -> np.ndarray:
        """Mask of candidates with cost >= ``fill * budget`` (budget: the largest cost if not given);
        if fewer than ``n_initial`` qualify, the ``n_initial`` most expensive ones."""
        if costs is None:
            return np.ones(len(self.candidates), dtype=bool)
        costs = np.asarray(costs, dtype=np.float64)
        if costs.shape != (len(self.candidates),):
            raise ValueError(f"costs: need one per candidate ({len(self.candidates)}), got {costs.shape}")
        budget = float(costs.max()) if budget is None else float(budget)
        pool = costs >= fill * budget
        if pool.sum() < self.n_initial:
            pool = np.zeros_like(pool)
            pool[np.argsort(-costs, kind="stable")[: self.n_initial]] = True
        return pool

    def ask(
        self, observed: Sequence[tuple[ArchConfig, float]], pending: Sequence[ArchConfig] = (),
        failed: Sequence[ArchConfig] = (),
    ) -> ArchConfig:
        """The next config to train, given all finished ``(config, accuracy)`` pairs, the pending configs
        (being trained elsewhere) and the failed ones (diverged: never proposed again, not modelled).
        Never one of these; raises ``CandidatesExhausted``."""
        observed, pending = list(observed), list(pending)
        taken = {c for c, _ in observed} | set(pending) | set(failed)
        free = np.array([c not in taken for c in self.candidates])
        if not free.any():
            raise CandidatesExhausted(
                f"all {len(self.candidates)} candidates are observed or pending; widen the space or budget"
            )
        if len(observed) < self.n_initial:
            return self.candidates[self._design_point([c for c, _ in observed] + pending, free)]
        return self.candidates[self._ei_point(observed, pending, free)]

    def _design_point(self, anchors: list[ArchConfig], free: np.ndarray) -> int:
        """Greedy maximin: the free pool candidate farthest from ``anchors`` (seeded order breaks ties)."""
        pool = self._in_design & free
        if not pool.any():
            pool = free
        order = self._order[pool[self._order]]
        if not anchors:
            return int(order[0])
        x = self._x[order]
        a = self.space.encode(anchors)
        nearest = np.sqrt(((x[:, None, :] - a[None, :, :]) ** 2).sum(-1)).min(axis=1)
        return int(order[np.argmax(nearest)])

    def _ei_point(
        self, observed: list[tuple[ArchConfig, float]], pending: list[ArchConfig], free: np.ndarray
    ) -> int:
        """The free candidate with the largest EI (ties: the larger std) under the fantasised GP."""
        configs = [c for c, _ in observed]
        y = np.array([a for _, a in observed], dtype=np.float64)
        self.surrogate = GPSurrogate(self.space, seed=self.seed).fit(configs, y)
        model = self.surrogate.condition(pending, [float(y.mean())] * len(pending)) if pending else self.surrogate
        index = np.flatnonzero(free)
        mean, std = model.predict([self.candidates[i] for i in index])
        ei = expected_improvement(mean, std, best=float(y.max()))
        return int(index[np.lexsort((std, ei))[-1]])
