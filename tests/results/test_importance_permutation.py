"""The GP's factor ranking only where the evidence carries it: 95 % intervals over posterior draws, and a
permutation test against the same GP fitted to the accuracies shuffled across configs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from archsearch.gp.surrogate import GPSurrogate
from archsearch.model.config import ConfigError
from archsearch.model.cost import closed_form_cost
from archsearch.model.space import FACTORS, FactorSpace
from archsearch.report.dashboard import importance_row
from archsearch.results.importance import (
    factor_importance,
    importance_text,
    share_draws,
)
from archsearch.results.permutation import (
    PermutationTest,
    default_shuffles,
    shuffled_configs,
    shuffled_fits,
)

SPACE = FactorSpace.default("v2")
BUDGET = 300_000_000
# Within 300M resolution dominates this surface: its true Shapley share over the budget's grid points is 0.85
WEIGHTS = {"resolution": 1.0, "width": 0.15, "mv2_depth": 0.05, "vit_depth": 0.0}
NOISE = 0.02
SHUFFLES = 20  # the fewest that let p reach 0.05 are 19: p = 1 / (1 + shuffles)


def surrogate_for(shuffle: int | None) -> GPSurrogate:
    """A GP (one restart, to keep the 20 refits cheap) on 24 noisy configs within the budget, their accuracies
    shuffled with seed ``shuffle`` unless it is None."""
    grid = [c for c in SPACE.grid() if closed_form_cost(c).macs <= BUDGET]
    configs = [grid[i] for i in np.random.default_rng(3).choice(len(grid), 24, replace=False)]
    x = SPACE.encode(configs)
    accuracies = sum(w * x[:, FACTORS.index(f)] for f, w in WEIGHTS.items())
    accuracies = accuracies + np.random.default_rng(0).normal(0, NOISE, len(configs))
    if shuffle is not None:
        accuracies = np.random.default_rng(shuffle).permutation(accuracies)
    return GPSurrogate(SPACE, seed=0, n_restarts=1).fit(configs, accuracies, noise_std=NOISE)


@pytest.fixture(scope="module")
def dominant():
    return factor_importance(surrogate_for(None), budget=BUDGET, shuffles=SHUFFLES)


@pytest.fixture(scope="module")
def shuffled():
    return factor_importance(surrogate_for(1), budget=BUDGET, shuffles=SHUFFLES)


def test_a_dominant_factor_ranks_first_with_an_interval_above_the_others(dominant):
    assert dominant.ranking()[0] == "resolution"
    share = dominant.intervals["shapley"]
    assert share["resolution"][0] > max(share[f][1] for f in FACTORS if f != "resolution"), share
    assert not dominant.declined and dominant.verdict.startswith("importance: resolution ranks first")
    test = dominant.permutation
    assert test.shuffles == SHUFFLES and test.as_extreme == 0 and test.p_value == pytest.approx(1 / 21)
    assert test.observed > max(test.shuffled)
    for measure in ("sobol_first", "sobol_total", "shapley"):
        assert set(dominant.intervals[measure]) == set(FACTORS)
        assert all(0.0 <= low <= high <= 1.0 for low, high in dominant.intervals[measure].values())
    assert dominant.draws == 256


def test_shuffled_accuracies_decline(shuffled):
    assert shuffled.declined and shuffled.verdict.startswith("importance declined: ")
    test = shuffled.permutation
    assert test.shuffles == SHUFFLES and test.p_value > 0.05  # some shuffled fit's top factor is as strong
    assert f"p = {test.p_value:.2g} over {SHUFFLES} shuffles" in shuffled.verdict
    reasons = shuffled.verdict.split(". Passed: ")[0]
    assert "shuffled across configs give a top factor as strong" in reasons
    assert shuffled.shapley is not None  # the shares are still shown, beside the verdict


def test_overlapping_intervals_decline_without_the_permutation_test():
    found = factor_importance(surrogate_for(1), budget=BUDGET, shuffles=0)
    top = found.ranking()[0]
    share = found.intervals["shapley"]
    assert share[top][0] <= max(share[f][1] for f in FACTORS if f != top)  # this surface's intervals overlap...
    assert found.declined and found.permutation is None
    assert found.verdict.startswith(f"importance declined: {top}'s Shapley share") and " overlaps " in found.verdict


def test_text_json_and_dashboard(dominant, shuffled):
    stored = json.loads(json.dumps(dominant.to_dict()))
    assert stored["permutation"]["p_value"] == pytest.approx(1 / 21) and stored["declined"] is False
    assert stored["intervals_95"]["shapley"]["resolution"] == list(dominant.intervals["shapley"]["resolution"])
    text = importance_text(stored)
    assert text == dominant.describe() and text.splitlines()[0] == dominant.verdict
    low, high = dominant.intervals["shapley"]["resolution"]
    assert f"{dominant.shapley['resolution']:.3f} [{low:.2f}, {high:.2f}]" in text
    assert "95 % interval of the same share over 256 joint GP posterior draws" in text
    old = {k: stored[k] for k in ("sobol_first", "sobol_total", "shapley", "fanova", "gp_lengthscales", "budget",
                                  "grid_points")}  # a summary.json from before the intervals
    assert "[" not in importance_text(old) and "declined" not in importance_text(old)
    row = importance_row(json.loads(json.dumps(shuffled.to_dict())))
    assert '<span class="warning">importance declined: ' in row and "[95 % over posterior draws]" in row
    assert importance_row({"shapley": None}) is None


def test_p_value_counts_ties_with_the_plus_one_correction():
    larger = PermutationTest("s", 0.3, (0.1, 0.3, 0.5, 0.2), seed=0)
    assert larger.as_extreme == 2 and larger.p_value == pytest.approx(3 / 5) and not larger.passed
    smaller = PermutationTest("s", 0.3, (0.1, 0.3, 0.5, 0.2), seed=0, smaller_is_extreme=True)
    assert smaller.as_extreme == 3 and smaller.p_value == pytest.approx(4 / 5)
    assert PermutationTest("s", 1.0, (0.5,) * 19, seed=0).p_value == pytest.approx(0.05)
    assert PermutationTest("s", 1.0, (0.5,) * 19, seed=0).passed
    assert not PermutationTest("s", 1.0, (0.5,) * 18, seed=0).passed  # 1 / 19: too few shuffles to pass
    assert PermutationTest("s", 0.2, (float("inf"),), seed=0, smaller_is_extreme=True).to_dict()["shuffled"] == [None]


def test_a_shuffle_moves_each_configs_observations_together():
    a, b, c, d = SPACE.sample(4, seed=5)
    configs = [a, a, b, c, c, c, d]  # e.g. a config at two rungs, another at three seeds
    seen = set()
    for seed in range(8):
        out = shuffled_configs(configs, np.random.default_rng(seed))
        assert out[0] == out[1] and out[3] == out[4] == out[5]
        assert sorted(x.id for x in {*out}) == sorted(x.id for x in {a, b, c, d})
        assert out == shuffled_configs(configs, np.random.default_rng(seed))  # seeded
        seen.add(tuple(x.id for x in out))
    assert len(seen) > 1


def test_shuffled_fits_are_seeded_and_keep_the_settings():
    configs = SPACE.sample(8, seed=1)
    accuracies = np.linspace(0.1, 0.8, 8)
    first, second = (GPSurrogate(SPACE, seed=4, n_restarts=1).fit(configs, accuracies, noise_std=0.05)
                     for _ in range(2))
    one, two = shuffled_fits(first, 2, seed=7), shuffled_fits(second, 2, seed=7)
    assert shuffled_fits(first, 2, seed=7) is one  # computed once per surrogate
    for x, y in zip(one, two):
        assert x.lengthscales() == y.lengthscales()
        assert (x.seed, x.n_restarts, x.fidelities) == (4, 1, 1)
        assert sorted(x._y) == sorted(accuracies) and x.rung_noise_std() == pytest.approx(0.05)
    assert one[0].lengthscales() != one[1].lengthscales()


def test_share_draws_are_per_row():
    grid = list(SPACE.grid())[:500]
    x = SPACE.encode(grid)
    g = np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2]
    first, total, shapley = share_draws(x, np.stack([g, 3 * g + 2, np.full(len(g), 0.7)]))
    for a in (first, total, shapley):
        np.testing.assert_allclose(a[0], a[1], atol=1e-12)  # shares do not depend on scale or offset
        assert np.isnan(a[2]).all()  # a flat row has none
    assert shapley[0].sum() == pytest.approx(1.0)


def test_the_number_of_shuffles_from_the_environment(monkeypatch):
    monkeypatch.delenv("ARCHSEARCH_SHUFFLES", raising=False)
    assert default_shuffles() == 20
    monkeypatch.setenv("ARCHSEARCH_SHUFFLES", "0")
    assert default_shuffles() == 0
    monkeypatch.setenv("ARCHSEARCH_SHUFFLES", "many")
    with pytest.raises(ConfigError, match="ARCHSEARCH_SHUFFLES"):
        default_shuffles()
