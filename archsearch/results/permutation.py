"""Permutation tests: does a result need the data, or would accuracies that say nothing give it too?

A factor ranking or a scaling formula read from a GP can come out confident from data that carry no signal:
a GP fitted to noise still has a shortest length scale, a factor its mean varies most along, a best config
per MAC level. So each is compared with the same quantity from the *same* fit (same GP class, seed,
restarts, rungs and measured noise) to the accuracies **shuffled across configs**: the distinct configs are
permuted, every config's observations (all its rungs and seeds) moving together to another config, so
everything but the link between factors and accuracy is kept.

The p-value counts the shuffles at least as extreme as the observed value, with the +1 correction (the
observed data are one of the orderings): ``p = (1 + extreme) / (1 + shuffles)``. It can reach ``ALPHA``
only with at least 19 shuffles; the default, ``SHUFFLES`` (or ``ARCHSEARCH_SHUFFLES``), is 20, so one
shuffled fit as extreme as the observed one is enough to decline. Everything is seeded: the shuffles by the
study's seed, the fits by the surrogate's.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import numpy as np

from ..gp.surrogate import GPSurrogate
from ..model.config import ArchConfig, ConfigError

ALPHA = 0.05  # decline above this p-value
SHUFFLES = 20  # the default number of shuffled fits: 1 / 21 < ALPHA, so a test can pass
SHUFFLES_ENV = "ARCHSEARCH_SHUFFLES"

# Shuffled fits per surrogate, so that importance and formula of one study share them (the fits dominate the
# cost). Keyed weakly: a surrogate's entries go with it.
_FITS: weakref.WeakKeyDictionary[GPSurrogate, dict[tuple, tuple[GPSurrogate, ...]]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PermutationTest:
    """An observed statistic against the same statistic from fits to shuffled accuracies."""

    statistic: str  # what is compared, in words
    observed: float
    shuffled: tuple[float, ...]  # one per shuffle, in shuffle order
    seed: int
    smaller_is_extreme: bool = False  # True when a smaller value is the stronger result (a narrower interval)

    @property
    def shuffles(self) -> int:
        return len(self.shuffled)

    @property
    def as_extreme(self) -> int:
        """Shuffles at least as extreme as the observed value (a tie counts)."""
        values = np.asarray(self.shuffled, dtype=np.float64)
        return int(np.sum(values <= self.observed if self.smaller_is_extreme else values >= self.observed))

    @property
    def p_value(self) -> float:
        return (1 + self.as_extreme) / (1 + self.shuffles)

    @property
    def passed(self) -> bool:
        """The observed result is rarer than ``ALPHA`` among shuffled data."""
        return self.p_value <= ALPHA

    def to_dict(self) -> dict:
        shuffled = [v if np.isfinite(v) else None for v in self.shuffled]  # None: that fit gave no value at all
        return {"statistic": self.statistic, "observed": self.observed, "shuffled": shuffled,
                "smaller_is_extreme": self.smaller_is_extreme, "shuffles": self.shuffles,
                "as_extreme": self.as_extreme, "p_value": self.p_value, "alpha": ALPHA, "seed": self.seed}


def default_shuffles() -> int:
    """``ARCHSEARCH_SHUFFLES`` if set (0 skips the tests), else ``SHUFFLES``."""
    value = os.environ.get(SHUFFLES_ENV, "").strip()
    if not value:
        return SHUFFLES
    if not value.isdigit():
        raise ConfigError(f"{SHUFFLES_ENV}: need a whole number of shuffles (0 skips the tests), got {value!r}")
    return int(value)


def shuffled_configs(configs: list[ArchConfig], rng: np.random.Generator) -> list[ArchConfig]:
    """``configs`` with the distinct configs permuted: observation ``k`` keeps its accuracy, rung and noise but
    now belongs to the config its config was mapped to."""
    distinct = list(dict.fromkeys(configs))
    mapping = {c: distinct[j] for c, j in zip(distinct, rng.permutation(len(distinct)))}
    return [mapping[c] for c in configs]


def shuffled_fits(surrogate: GPSurrogate, shuffles: int, seed: int = 0) -> tuple[GPSurrogate, ...]:
    """``shuffles`` refits of ``surrogate``'s GP (same class and settings) to its accuracies shuffled across
    configs, the ``k``-th shuffle drawn from ``seed``; computed once per surrogate, data, count and seed."""
    # the fit's own evidence, as ``GPSurrogate.fit`` stored it
    configs, y, rungs, noise = surrogate._configs, surrogate._y, surrogate._rungs, surrogate._noise_std
    key = (shuffles, seed, y.tobytes(), rungs.tobytes(), None if noise is None else noise.tobytes(),
           tuple(c.id for c in configs))
    cached = _FITS.setdefault(surrogate, {})
    if key not in cached:
        rng = np.random.default_rng(seed)
        cached.clear()  # one entry per surrogate: a refit surrogate's old fits are stale
        cached[key] = tuple(
            GPSurrogate(surrogate.space, surrogate.seed, surrogate.n_restarts, surrogate.fidelities,
                        surrogate.rung_prior).fit(shuffled_configs(configs, rng), y, rungs, noise)
            for _ in range(shuffles))
    return cached[key]
