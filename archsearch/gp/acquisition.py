"""Acquisition: expected improvement, and with it ask/tell Bayesian optimisation over a finite set of
candidate configs (``GPProposer``, issue 4).

The candidates are the grid points that fit the MAC budget (the caller filters them with the cost model).
A proposer is stateless between asks apart from its fixed setup: every ``ask`` gets the whole history, so
several workers (or an Optuna sampler) can share one proposer and the answer depends only on the seed, the
candidates and that history.

* Initial design (fewer than ``n_initial`` observations): greedy maximin in the encoded unit cube. The
  design is drawn from the candidates that use at least ``design_fill`` of the budget (default one half),
  because accuracy grows with model size and the best configs under a MAC cap sit near the cap; the first
  point (no history) is a seeded random pick from that pool, each later one the pool candidate farthest
  from everything observed or pending (ties: seeded order). Without costs every candidate is in the pool.
* Afterwards: a ``GPSurrogate`` fitted to the observations (every rung, with each rung's measured noise
  when given); the candidate with the largest *augmented* expected improvement of a new evaluation is
  returned (Huang et al., 2006): the EI of its top-rung accuracy over a noise-aware incumbent (the highest
  posterior mean at the top among the observed configs within ``budget``, not the luckiest score), times
  ``1 - noise / sqrt(var + noise^2)`` of the rung the evaluation is made at (rung 0): a point whose
  cheap score is already known to within its noise is worth little more evaluation there. (Huang's
  correlation term is a constant under the rung kernel's prior, and a rung-0 evaluation costs the same
  ratio to a top one everywhere, so neither changes the choice.)
* Pending trials (proposed, not finished) get a constant-liar fantasy: each is added to the GP at the
  *mean* observed accuracy, with the hyper-parameters fitted on real data only. The mean is the middle
  road between the optimistic liar (the best, which keeps workers clustered around one pending point)
  and the pessimistic one (the worst, which drives them into poor regions). Observed and pending configs
  are never proposed again; when no candidate is left ``ask`` raises ``CandidatesExhausted``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr

from ..model.config import ArchConfig
from ..model.cost import closed_form_cost
from ..model.space import FactorSpace
from .models import BetaParams
from .surrogate import GPSurrogate


def expected_improvement(
    mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.0
) -> np.ndarray:
    """Expected improvement of a maximisation over ``best + xi`` under N(mean, std^2).

    Where ``std`` is (near) zero the outcome is certain and EI is the plain improvement ``max(mean -
    best - xi, 0)``; elsewhere the closed form, clipped at 0 against round-off.
    """
    mean, std = np.broadcast_arrays(np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))
    improvement = mean - best - xi
    certain = std <= 1e-12
    safe_std = np.where(certain, 1.0, std)
    z = improvement / safe_std
    ei = improvement * ndtr(z) + safe_std * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return np.where(certain, np.maximum(improvement, 0.0), np.maximum(ei, 0.0))


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
        fidelities: int = 1,
        rung_prior: BetaParams | Sequence[BetaParams] | None = None,
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
        self.fidelities = fidelities
        self.rung_prior = rung_prior  # the GP's prior on the rungs' correlation (``GPSurrogate``)
        self.surrogate: GPSurrogate | None = None  # fitted by the last ask past the initial design
        self._x = space.encode(self.candidates)
        self._order = np.random.default_rng(seed).permutation(len(self.candidates))
        self._in_design = self._design_pool(costs, budget, design_fill)
        self.budget = budget  # the incumbent is the best observed network within it (a family's smaller budgets)

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
        self, observed: Sequence[tuple], pending: Sequence[ArchConfig] = (), failed: Sequence[ArchConfig] = (),
        noise_std: Sequence[float] | None = None, proposed: int | None = None,
    ) -> ArchConfig:
        """The next config to train at rung 0, given all finished ``(config, accuracy)`` or ``(config,
        accuracy, rung)`` observations, the pending configs (being trained elsewhere) and the failed ones
        (diverged: never proposed again, not modelled), and the noise std of each rung (None: learnt).
        ``proposed``: how many of the networks are this proposer's own proposals (the design runs until
        ``n_initial`` of them; None: every observed network counts, as when the proposer made them all). The
        design keeps its distance from every network, baselines included.
        Never one of these; raises ``CandidatesExhausted``. (The caller's candidates are one config per
        distinct network, as ``search.feasible_grid`` gives them.)"""
        observed = [(o[0], float(o[1]), int(o[2]) if len(o) > 2 else self.fidelities - 1) for o in observed]
        pending = list(pending)
        taken = {c for c, _, _ in observed} | set(pending) | set(failed)
        free = np.array([c not in taken for c in self.candidates])
        if not free.any():
            raise CandidatesExhausted(
                f"all {len(self.candidates)} candidates are observed or pending; widen the space or budget"
            )
        anchors = list(dict.fromkeys(c for c, _, _ in observed))
        if (len(anchors) if proposed is None else proposed) < self.n_initial:
            return self.candidates[self._design_point(anchors + pending, free)]
        return self.candidates[self._ei_point(observed, pending, free, noise_std)]

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
        self, observed: list[tuple[ArchConfig, float, int]], pending: list[ArchConfig], free: np.ndarray,
        noise_std: Sequence[float] | None,
    ) -> int:
        """The free candidate with the largest augmented EI (ties: the larger std) under the fantasised GP."""
        configs = [c for c, _, _ in observed]
        y = np.array([a for _, a, _ in observed], dtype=np.float64)
        rungs = np.array([r for _, _, r in observed])
        noise = None if noise_std is None else [noise_std[r] for r in rungs]
        self.surrogate = GPSurrogate(self.space, seed=self.seed, fidelities=self.fidelities,
                                     rung_prior=self.rung_prior).fit(
            configs, y, rungs, noise)
        model = self.surrogate
        if pending:  # constant liar at rung 0, at the mean observed there
            at0 = y[rungs == 0] if (rungs == 0).any() else y
            model = model.condition(pending, [float(at0.mean())] * len(pending), [0] * len(pending))
        seen = list(dict.fromkeys(configs))
        fitting = [c for c in seen if self.budget is None or closed_form_cost(c).macs <= self.budget]
        incumbent = float(model.predict(fitting or seen)[0].max())
        index = np.flatnonzero(free)
        probe = [self.candidates[i] for i in index]
        mean, std = model.predict(probe)
        score = expected_improvement(mean, std, best=incumbent)
        if noise_std is not None:
            _, std0 = model.predict(probe, rung=0)
            score = score * (1 - noise_std[0] / np.sqrt(std0**2 + noise_std[0] ** 2))
        return int(index[np.lexsort((std, score))[-1]])
