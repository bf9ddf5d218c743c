"""The finalists: the screened networks a deciding rung trains, chosen by the GP's posterior.

Screening scores are noisy and biased, so the highest screening score is partly luck. The GP pools every
screening rung and seed with each rung's noise, and its posterior mean at the highest screening rung ranks
the networks by what the evidence says about them, not by their luckiest run. The choice uses the screening
rungs only, so it does not depend on which deciding-rung jobs (the fixed baselines) happen to have finished,
and every worker that reads the same study chooses the same finalists (the fit is seeded and deterministic;
it is cached per set of screening results). Where the deciding rung's verdict moves each network by a
resolution shift (``noise.RESOLUTION_SLOPE``: the half-side screening rungs hide what resolution buys just as
``decide`` does), the posterior mean is moved by the same shift, so the finalists are chosen for the fidelity
the verdict is about.
"""

from __future__ import annotations

from functools import lru_cache

from ..gp.models import rung_priors
from ..gp.surrogate import GPSurrogate
from ..model.config import ArchConfig
from ..model.space import FactorSpace


def choose_finalists(space: FactorSpace, seed: int, screening: tuple[tuple[ArchConfig, int, float, float], ...],
                     candidates: tuple[ArchConfig, ...], continues: tuple[bool, ...],
                     count: int, shifts: tuple[float, ...] = ()) -> tuple[ArchConfig, ...]:
    """The ``count`` best of ``candidates`` by the posterior mean at the highest screening rung of a GP fitted
    to ``screening`` (config, rung, score, noise std: every finished screening job; ``continues``: whether
    each screening rung continues the one below, for the rung kernel's prior), each moved by its entry of
    ``shifts`` (the verdict's resolution shift; none: 0), best first; ties keep the candidates' order."""
    return _choose(space, seed, screening, candidates, continues, count, shifts or (0.0,) * len(candidates))


@lru_cache(maxsize=32)
def _choose(space: FactorSpace, seed: int, screening: tuple[tuple[ArchConfig, int, float, float], ...],
            candidates: tuple[ArchConfig, ...], continues: tuple[bool, ...], count: int,
            shifts: tuple[float, ...]) -> tuple[ArchConfig, ...]:
    rungs = len(continues) + 1
    if len(candidates) <= count:
        return candidates
    if len(screening) < 2:
        return candidates[:count]
    configs, rung, scores, noise = zip(*screening)
    prior = rung_priors(list(continues)) if continues else None
    surrogate = GPSurrogate(space, seed=seed, fidelities=rungs, rung_prior=prior).fit(configs, scores, rung, noise)
    mean, _ = surrogate.predict(list(candidates), rung=rungs - 1)
    order = sorted(range(len(candidates)), key=lambda i: (-(float(mean[i]) + shifts[i]), i))
    return tuple(candidates[i] for i in order[:count])
