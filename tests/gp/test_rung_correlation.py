"""The multi-fidelity GP's rung correlation (issue 22): positive by construction, a Beta prior that says the
rungs agree, and fitted only where networks scored at both rungs identify it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from archsearch.gp.acquisition import GPProposer
from archsearch.gp.models import CONTINUED_RUNG_PRIOR, RUNG_PRIOR, rung_priors
from archsearch.gp.surrogate import MIN_SHARED_NETWORKS, GPSurrogate
from archsearch.model.config import ArchConfig
from archsearch.model.space import FactorSpace

SPACE = FactorSpace.default("v2")
GRID = list(SPACE.grid())
X = SPACE.encode(GRID)
OPTIMUM = SPACE.encode([ArchConfig("v2", resolution=224, width=0.875, mv2_depth=1.0, vit_depth=1.0)])[0]
FLAT = (1.0, 1.0)  # a uniform prior on (0, 1): what the data alone say, within the constraint
NOISE = 0.003


def bowl(x: np.ndarray) -> np.ndarray:
    return 0.8 - 0.2 * (np.array([1.0, 2.0, 0.6, 0.0]) * (x - OPTIMUM) ** 2).sum(axis=1)


def two_rungs(top: Callable[[np.ndarray], np.ndarray] | None, shared: int = 8, cheap: int = 16, seed: int = 0,
              rung_prior: tuple[float, float] | None = None) -> GPSurrogate:
    """``cheap`` networks scored at rung 0 (the bowl, 0.3 lower), the first ``shared`` of them promoted and
    scored at rung 1 by ``top`` of their rung-0 score; fixed noise ``NOISE``."""
    rng = np.random.default_rng(seed)
    at = rng.choice(len(GRID), cheap, replace=False)
    low = bowl(X[at]) - 0.3 + rng.normal(0, NOISE, cheap)
    configs, y, rungs = [GRID[i] for i in at], list(low), [0] * cheap
    if top is not None and shared:
        configs += configs[:shared]
        y += list(top(low[:shared]) + rng.normal(0, NOISE, shared))
        rungs += [1] * shared
    return GPSurrogate(SPACE, seed=0, fidelities=2, rung_prior=rung_prior).fit(configs, y, rungs, noise_std=NOISE)


@pytest.mark.parametrize("prior", [None, FLAT])
def test_rungs_that_rise_together_fit_a_high_correlation(prior) -> None:
    """Rung 1 = rung 0 + an offset, over 8 shared networks: fitted, high, also under a flat prior (so the data
    say it, not the prior)."""
    surrogate = two_rungs(lambda low: low + 0.1, rung_prior=prior)
    report = surrogate.rung_correlation_report()[0]
    assert surrogate.rung_correlation_source() == ["fitted"]
    assert report.source == "fitted" and report.shared == 8
    assert report.value > 0.9 and report.value > report.prior_mean
    assert np.all(surrogate.rung_correlation() >= 0)
    assert "fitted from 8 networks at both rungs" in report.describe()


@pytest.mark.parametrize("shared", [0, MIN_SHARED_NETWORKS - 1])
def test_without_enough_shared_networks_the_correlation_is_the_prior(shared: int) -> None:
    """Rung-0 scores alone (or too few networks at both rungs) cannot identify the correlation: it is held at
    the prior mean, flagged as the prior's, and the model predicts with that value."""
    surrogate = two_rungs(lambda low: -low, shared=shared)  # even anti-correlated: too few to say so
    report = surrogate.rung_correlation_report()[0]
    assert surrogate.rung_correlation_source() == ["prior"]
    assert report.source == "prior" and report.shared == shared
    assert report.value == pytest.approx(RUNG_PRIOR[0] / sum(RUNG_PRIOR)) == report.prior_mean
    low, high = report.prior_interval
    assert 0.5 < low < report.prior_mean < high < 1
    assert "the prior's" in report.describe() and f"{shared} network" in report.describe()
    continued = two_rungs(None, rung_prior=CONTINUED_RUNG_PRIOR)
    assert continued.rung_correlation()[0, 1] == pytest.approx(0.9)


def test_anti_correlated_rungs_never_fit_a_negative_correlation() -> None:
    """Rung 1 = -rung 0: a flat prior lets the fit go as low as the constraint allows, which is 0, not -1;
    the default prior moves down from its mean, and stays positive."""
    flat = two_rungs(lambda low: 0.9 - low, rung_prior=FLAT).rung_correlation()
    assert 0.0 <= flat[0, 1] < 0.2 and np.all(flat >= 0)
    report = two_rungs(lambda low: 0.9 - low).rung_correlation_report()[0]
    assert report.source == "fitted" and 0.0 < report.value < report.prior_mean


def test_three_rungs_chain_their_correlations_and_take_one_prior_per_pair() -> None:
    surrogate = GPSurrogate(SPACE, fidelities=3, rung_prior=[RUNG_PRIOR, CONTINUED_RUNG_PRIOR])
    c = surrogate.rung_correlation()
    np.testing.assert_allclose(c, [[1, 0.8, 0.72], [0.8, 1, 0.9], [0.72, 0.9, 1]])
    assert np.all(np.linalg.eigvalsh(c) > 0)
    assert surrogate.rung_correlation_source() == ["prior", "prior"]
    assert rung_priors([False, True]) == [RUNG_PRIOR, CONTINUED_RUNG_PRIOR]
    assert GPSurrogate(SPACE, fidelities=3, rung_prior=(18, 2)).rung_prior == [(18.0, 2.0)] * 2
    assert GPSurrogate(SPACE).rung_correlation() is None and GPSurrogate(SPACE).rung_correlation_report() == []
    for bad in [(0.0, 2.0), [RUNG_PRIOR], [RUNG_PRIOR] * 3]:
        with pytest.raises(ValueError, match="rung_prior"):
            GPSurrogate(SPACE, fidelities=3, rung_prior=bad)


def test_fantasies_keep_the_fitted_correlation_and_its_source() -> None:
    fitted = two_rungs(lambda low: low + 0.1)
    fantasy = fitted.condition(GRID[:4], [0.4] * 4, rungs=[0] * 4)
    np.testing.assert_allclose(fantasy.rung_correlation(), fitted.rung_correlation())
    assert fantasy.rung_correlation_report() == fitted.rung_correlation_report()


def test_the_proposer_fits_with_its_rung_prior() -> None:
    """With rung-0 results only (as when the proposer asks), its GP's correlation is the prior it was given."""
    rng = np.random.default_rng(1)
    at = rng.choice(len(GRID), 6, replace=False)
    proposer = GPProposer(SPACE, GRID, n_initial=4, fidelities=2, rung_prior=CONTINUED_RUNG_PRIOR)
    proposer.ask([(GRID[i], float(bowl(X[[i]])[0]), 0) for i in at], noise_std=[NOISE, NOISE])
    assert proposer.surrogate.rung_correlation_source() == ["prior"]
    assert proposer.surrogate.rung_correlation()[0, 1] == pytest.approx(0.9)
