"""Test helper: networks scored on a known synthetic surface, and the GP fitted to them (the formula's and the
law's tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from archsearch.gp.surrogate import GPSurrogate
from archsearch.model.config import ArchConfig
from archsearch.model.space import FactorSpace


def scored(trained: Sequence[tuple[ArchConfig, int]], truth: Callable[[ArchConfig, int], float], noise: float,
           rng: np.random.Generator) -> np.ndarray:
    """Each (config, MACs) scored by ``truth`` plus Gaussian noise of std ``noise``."""
    return np.array([truth(c, m) for c, m in trained]) + rng.normal(0, noise, len(trained))


def fit_gp(space: FactorSpace, trained: Sequence[tuple[ArchConfig, int]], accuracies: np.ndarray,
           noise: float) -> GPSurrogate:
    """The GP of ``space`` fitted to the scores, with their noise known."""
    return GPSurrogate(space, seed=0).fit([c for c, _ in trained], accuracies, noise_std=noise)
