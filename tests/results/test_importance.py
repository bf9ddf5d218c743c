"""Variance-based importance: exact Sobol indices and Shapley effects on the grid, the GP's view of a surface
with one dominant factor, fANOVA over trials, length scales reported apart."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from archsearch.gp.surrogate import GPSurrogate
from archsearch.model.cost import closed_form_cost
from archsearch.model.space import FACTORS, FactorSpace
from archsearch.results.importance import (
    factor_importance,
    fanova_importance,
    importance_text,
)
from archsearch.search.params import config_params, distributions

SPACE = FactorSpace.default("v2")
WEIGHTS = {"width": 3.0, "resolution": 1.5, "mv2_depth": 0.5, "vit_depth": 0.0}  # known order; ViT depth: nothing


def unit(configs) -> dict[str, np.ndarray]:
    x = SPACE.encode(configs)
    return {f: x[:, i] for i, f in enumerate(FACTORS)}


class KnownSurface:
    """A stand-in for the GP with a known mean: g1(width) + g2(resolution) * g3(mv2 depth)."""

    space = SPACE

    @staticmethod
    def parts(u):
        return np.sin(3 * u["width"]), 1 + u["resolution"] ** 2, u["mv2_depth"] - 0.3

    def predict(self, configs):
        g1, g2, g3 = self.parts(unit(configs))
        return g1 + g2 * g3, np.zeros(len(configs))

    def lengthscales(self):
        return dict.fromkeys(FACTORS, 1.0)


def test_sobol_and_shapley_are_exact_on_the_product_grid():
    axis = {r.name: (np.array(r.values()) - r.min) / (r.max - r.min) for r in SPACE.ranges}
    g1, g2, g3 = KnownSurface.parts(axis)  # each over its own axis, every value equally likely
    v1, v2, v3 = g1.var(), g2.var(), g3.var()
    main_r, main_m, joint = g3.mean() ** 2 * v2, g2.mean() ** 2 * v3, v2 * v3  # ANOVA terms of g2 * g3
    total = v1 + main_r + main_m + joint
    expected_first = {"width": v1, "resolution": main_r, "mv2_depth": main_m, "vit_depth": 0.0}
    expected_total = {"width": v1, "resolution": main_r + joint, "mv2_depth": main_m + joint, "vit_depth": 0.0}
    expected_shapley = {"width": v1, "resolution": main_r + joint / 2, "mv2_depth": main_m + joint / 2,
                        "vit_depth": 0.0}
    found = factor_importance(KnownSurface(), shuffles=0)  # a stand-in: no draws, no refits
    for name, expected in [("sobol_first", expected_first), ("sobol_total", expected_total),
                           ("shapley", expected_shapley)]:
        for f in FACTORS:
            assert getattr(found, name)[f] == pytest.approx(expected[f] / total, abs=1e-9), (name, f)
    assert found.grid_points == len(SPACE) and found.budget is None
    assert found.intervals is None and found.verdict is None  # too many points for joint draws, and untested


@pytest.fixture(scope="module")
def dominated():
    """A GP fitted to 40 noisy grid configs of a surface where width dominates."""
    configs = SPACE.sample(40, seed=3)
    u = unit(configs)
    accuracies = sum(w * u[f] for f, w in WEIGHTS.items()) + np.random.default_rng(0).normal(0, 0.02, len(configs))
    return configs, accuracies, GPSurrogate(SPACE, seed=0).fit(configs, accuracies, noise_std=0.02)


def test_gp_importance_ranks_the_dominant_factor_first(dominated):
    *_, surrogate = dominated
    found = factor_importance(surrogate, shuffles=0)  # the permutation test: test_importance_permutation
    known_order = sorted(WEIGHTS, key=lambda f: -WEIGHTS[f])
    for name in ("sobol_first", "sobol_total", "shapley"):
        scores = getattr(found, name)
        assert sorted(scores, key=lambda f: -scores[f]) == known_order, (name, scores)
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert found.ranking() == known_order
    assert found.sobol_total["vit_depth"] < 0.02  # the factor that does nothing
    assert all(found.sobol_first[f] - 1e-9 <= found.shapley[f] <= found.sobol_total[f] + 1e-9 for f in FACTORS)
    assert found.sobol_first["width"] > 0.6
    assert found.lengthscales == surrogate.lengthscales()


def test_importance_within_a_budget_and_as_json(dominated):
    *_, surrogate = dominated
    budget = 600_000_000
    found = factor_importance(surrogate, budget=budget, shuffles=0)
    assert found.grid_points == sum(closed_form_cost(c).macs <= budget for c in SPACE.grid())
    assert sum(found.shapley.values()) == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 for d in (found.sobol_first, found.sobol_total, found.shapley) for v in d.values())
    stored = json.loads(json.dumps(found.to_dict()))
    assert stored["budget"] == budget and stored["gp_lengthscales"] == surrogate.lengthscales()
    text = importance_text(stored)
    assert text == found.describe()
    assert f"within {budget / 1e6:.0f}M MACs" in text and "not an importance" in text
    assert stored["permutation"] is None and stored["posterior_draws"] == found.draws > 0
    assert all(0.0 <= low <= high <= 1.0 for d in found.intervals.values() for low, high in d.values())


def trials_of(configs, accuracies):
    dists = distributions(SPACE)
    return [optuna.trial.create_trial(params=config_params(c, SPACE), distributions=dists, values=[a, 1.0],
                                      user_attrs={"accuracy": float(a)}) for c, a in zip(configs, accuracies)]


def test_fanova_over_multi_objective_trials(dominated):
    configs, accuracies, _ = dominated
    trials = trials_of(configs, accuracies)  # two objectives, as NSGA-III studies store them
    found = factor_importance(None, trials)
    assert found.sobol_first is None and found.lengthscales is None
    assert max(found.fanova, key=found.fanova.get) == "width" and found.ranking()[0] == "width"
    assert fanova_importance(trials[:2]) is None
    assert fanova_importance(trials_of(configs[:5], [0.5] * 5)) is None
