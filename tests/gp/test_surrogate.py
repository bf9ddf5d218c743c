"""GPSurrogate and expected_improvement on synthetic accuracy functions over the real factor spaces."""

from __future__ import annotations

import numpy as np
import pytest

from archsearch.gp.acquisition import expected_improvement
from archsearch.gp.surrogate import JOINT_PAIRS, GPSurrogate
from archsearch.model.config import ArchConfig
from archsearch.model.space import FACTORS, FactorSpace

SPACE = FactorSpace.default("v2")
GRID = list(SPACE.grid())
X = SPACE.encode(GRID)
OPTIMUM = SPACE.encode([ArchConfig("v2", resolution=224, width=0.875, mv2_depth=1.0, vit_depth=1.0)])[0]


def bowl(x: np.ndarray) -> np.ndarray:
    """An accuracy-like quadratic bowl, optimum at an interior grid point; ignores vit_depth."""
    weights = np.array([1.0, 2.0, 0.6, 0.0])
    return 0.8 - 0.2 * (weights * (x - OPTIMUM) ** 2).sum(axis=1)


def r_squared(truth: np.ndarray, pred: np.ndarray) -> float:
    return 1.0 - float(((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


@pytest.fixture(scope="module")
def fitted() -> tuple[GPSurrogate, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(GRID))
    train, held_out = order[:120], order[120:1120]
    y = bowl(X[train]) + rng.normal(0.0, 0.002, len(train))
    surrogate = GPSurrogate(SPACE, seed=0).fit([GRID[i] for i in train], y)
    return surrogate, train, held_out, y


def test_fits_held_out_points(fitted) -> None:
    surrogate, _, held_out, _ = fitted
    mean, std = surrogate.predict([GRID[i] for i in held_out])
    truth = bowl(X[held_out])
    assert r_squared(truth, mean) > 0.95
    # calibrated enough: most held-out errors lie within 3 std (std includes the latent uncertainty only)
    assert np.mean(np.abs(mean - truth) <= 3 * std + 0.005) > 0.9


def test_std_small_at_data_and_large_away_from_it() -> None:
    rng = np.random.default_rng(1)
    low = np.flatnonzero(X[:, 0] <= 0.34)  # resolution <= 192: the far side of the space stays unseen
    train = rng.choice(low, 60, replace=False)
    surrogate = GPSurrogate(SPACE, seed=0).fit([GRID[i] for i in train], bowl(X[train]))
    _, std_train = surrogate.predict([GRID[i] for i in train])
    far = np.flatnonzero(X[:, 0] == 1.0)
    _, std_far = surrogate.predict([GRID[i] for i in far])
    _, std_noisy = surrogate.predict([GRID[i] for i in train], include_noise=True)
    assert std_far.mean() > 5 * std_train.mean()
    assert np.all(std_noisy >= std_train)


def test_lengthscales_rank_the_ignored_factor_longest(fitted) -> None:
    scales = fitted[0].lengthscales()
    assert list(scales) == list(FACTORS)
    assert max(scales, key=scales.get) == "vit_depth"
    assert min(scales, key=scales.get) == "width"  # the bowl's steepest factor


def test_marginal_agrees_with_predict(fitted) -> None:
    surrogate, *_ = fitted
    base = surrogate.incumbent()
    for factor in FACTORS:
        values, mean, std = surrogate.marginal(factor)
        assert values.tolist() == list(SPACE.range(factor).values())
        assert mean.shape == std.shape == values.shape
        configs = [base.replace(**{factor: int(v) if factor == "resolution" else float(v)}) for v in values]
        expected_mean, expected_std = surrogate.predict(configs)
        np.testing.assert_allclose(mean, expected_mean, atol=1e-9)
        np.testing.assert_allclose(std, expected_std, atol=1e-9)
    values, mean, _ = surrogate.marginal("width", n=25)
    assert len(values) == len(mean) == 25
    assert (values[0], values[-1]) == (SPACE.range("width").min, SPACE.range("width").max)
    # the curve peaks near the bowl's optimum width (0.875)
    assert abs(values[np.argmax(mean)] - 0.875) <= 0.15


def test_slice2d_shapes_and_values(fitted) -> None:
    surrogate, *_ = fitted
    base = GRID[123]
    for fx, fy in JOINT_PAIRS:
        xs, ys, mean, std = surrogate.slice2d(fx, fy, base=base)
        assert mean.shape == std.shape == (len(ys), len(xs))
        for j, i in [(0, 0), (len(ys) - 1, 0), (1, len(xs) - 1)]:
            changes = {f: int(v) if f == "resolution" else float(v) for f, v in ((fx, xs[i]), (fy, ys[j]))}
            config = base.replace(**changes)
            m, s = surrogate.predict([config])
            assert mean[j, i] == pytest.approx(m[0], abs=1e-9)
            assert std[j, i] == pytest.approx(s[0], abs=1e-9)
    with pytest.raises(ValueError):
        surrogate.slice2d("width", "width")


def test_deterministic_given_seed(fitted) -> None:
    surrogate, train, held_out, y = fitted
    configs = [GRID[i] for i in train]
    again = GPSurrogate(SPACE, seed=0).fit(configs, y)
    probe = [GRID[i] for i in held_out[:200]]
    np.testing.assert_array_equal(surrogate.predict(probe)[0], again.predict(probe)[0])
    assert again.lengthscales() == surrogate.lengthscales()


def test_predictions_follow_the_units_of_the_targets(fitted) -> None:
    """Standardisation: accuracies in percent give 100x the mean and std of accuracies as fractions."""
    surrogate, train, held_out, y = fitted
    percent = GPSurrogate(SPACE, seed=0).fit([GRID[i] for i in train], 100 * y + 3)
    probe = [GRID[i] for i in held_out[:100]]
    mean, std = surrogate.predict(probe)
    mean_pct, std_pct = percent.predict(probe)
    np.testing.assert_allclose(mean_pct, 100 * mean + 3, rtol=1e-5)
    np.testing.assert_allclose(std_pct, 100 * std, rtol=1e-4)


def test_condition_keeps_hyperparameters_and_moves_the_posterior(fitted) -> None:
    surrogate, _, held_out, _ = fitted
    point = GRID[held_out[0]]
    before_mean, before_std = surrogate.predict([point])
    lie = float(before_mean[0]) - 0.05
    fantasy = surrogate.condition([point], [lie])
    after_mean, after_std = fantasy.predict([point])
    assert fantasy.lengthscales() == surrogate.lengthscales()
    assert after_std[0] < before_std[0]
    assert abs(after_mean[0] - lie) < abs(before_mean[0] - lie)
    assert surrogate.predict([point])[0][0] == before_mean[0]  # the original is untouched


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_data_falls_back(n: int) -> None:
    surrogate = GPSurrogate(SPACE).fit(GRID[:n], [0.7] * n)
    mean, std = surrogate.predict(GRID[:50])
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    np.testing.assert_allclose(mean, 0.7 if n else 0.0, atol=1e-9)
    values, mean, _ = surrogate.marginal("resolution")
    assert len(values) == len(mean) == len(SPACE.range("resolution").values())


def test_constant_targets_fall_back() -> None:
    surrogate = GPSurrogate(SPACE).fit(GRID[::500], [0.61] * len(GRID[::500]))
    mean, std = surrogate.predict(GRID[::7])
    np.testing.assert_allclose(mean, 0.61, atol=1e-9)
    assert np.all(np.isfinite(std))


def test_rejects_mismatched_or_non_finite_data() -> None:
    with pytest.raises(ValueError):
        GPSurrogate(SPACE).fit(GRID[:3], [0.1, 0.2])
    with pytest.raises(ValueError):
        GPSurrogate(SPACE).fit(GRID[:2], [0.1, float("nan")])


def test_v1_space_models_the_variant() -> None:
    space = FactorSpace.default("v1")
    configs = space.sample(80, seed=3)
    x = space.encode(configs)
    y = 0.7 + 0.1 * x[:, 1] - 0.05 * (x[:, 0] - 0.5) ** 2 + 0.03 * x[:, 4]
    surrogate = GPSurrogate(space, seed=0).fit(configs, y)
    assert list(surrogate.lengthscales()) == [*FACTORS, "variant"]
    values, mean, _ = surrogate.marginal("width", base=configs[0])
    assert len(values) == len(mean) == len(space.range("width").values())
    held_out = space.sample(300, seed=4)
    xh = space.encode(held_out)
    truth = 0.7 + 0.1 * xh[:, 1] - 0.05 * (xh[:, 0] - 0.5) ** 2 + 0.03 * xh[:, 4]
    assert r_squared(truth, surrogate.predict(held_out)[0]) > 0.95


def test_expected_improvement_properties() -> None:
    best = 0.8
    # far below the best with a tiny std: (essentially) nothing to gain
    assert expected_improvement(np.array([0.5]), np.array([1e-4]), best)[0] < 1e-12
    # certain outcomes: the plain improvement, no division by zero
    np.testing.assert_allclose(expected_improvement(np.array([0.9, 0.7]), np.zeros(2), best), [0.1, 0.0])
    # monotone in the mean at a fixed std, and in the std at a fixed mean
    means = np.linspace(0.6, 1.0, 41)
    ei = expected_improvement(means, np.full_like(means, 0.05), best)
    assert np.all(np.diff(ei) > 0)
    stds = np.linspace(0.01, 0.2, 20)
    assert np.all(np.diff(expected_improvement(np.full_like(stds, 0.75), stds, best)) > 0)
    # uncertainty makes a below-best mean worth something; xi demands more
    assert expected_improvement(np.array([0.75]), np.array([0.1]), best)[0] > 0
    assert expected_improvement(np.array([0.85]), np.array([0.05]), best, xi=0.02)[0] < expected_improvement(
        np.array([0.85]), np.array([0.05]), best
    )[0]
    # equals the Monte Carlo expectation of max(f - best, 0)
    rng = np.random.default_rng(0)
    samples = 0.78 + 0.04 * rng.standard_normal(400_000)
    assert expected_improvement(np.array([0.78]), np.array([0.04]), best)[0] == pytest.approx(
        np.maximum(samples - best, 0).mean(), rel=0.02
    )


def test_multi_fidelity_gp_predicts_the_top_rung_better_than_the_top_rung_alone() -> None:
    """Many cheap scores of a correlated surface plus a few top-rung scores beat the top-rung scores alone.
    The top-rung networks are 10 of the cheap ones, as promotion makes them: the correlation is fitted."""
    rng = np.random.default_rng(5)
    order = rng.permutation(len(GRID))
    cheap, top, held_out = order[:90], order[80:90], order[90:1090]

    def low(x: np.ndarray) -> np.ndarray:  # lower, compressed, and a little different from the top rung
        return 0.6 * bowl(x) - 0.15 + 0.01 * np.sin(6 * x[:, 3])

    configs = [GRID[i] for i in cheap] + [GRID[i] for i in top]
    y = np.concatenate([low(X[cheap]), bowl(X[top])]) + rng.normal(0, 0.003, 100)
    rungs = [0] * 90 + [1] * 10
    mf = GPSurrogate(SPACE, seed=0, fidelities=2).fit(configs, y, rungs=rungs, noise_std=0.003)
    single = GPSurrogate(SPACE, seed=0).fit([GRID[i] for i in top], y[90:], noise_std=0.003)
    truth = bowl(X[held_out])
    probe = [GRID[i] for i in held_out]
    r2_mf, r2_single = r_squared(truth, mf.predict(probe)[0]), r_squared(truth, single.predict(probe)[0])
    assert r2_mf > 0.8 and r2_mf > r2_single + 0.2, (r2_mf, r2_single)
    assert mf.rung_correlation_source() == ["fitted"]
    assert mf.rung_correlation()[0, 1] > 0.8  # the rungs were learnt to agree
    low_mean, _ = mf.predict(probe[:50], rung=0)  # and each rung keeps its own level
    assert abs(low_mean.mean() - low(X[held_out[:50]]).mean()) < 0.05


def test_fixed_noise_is_the_measured_noise_not_a_learnt_one() -> None:
    rng = np.random.default_rng(2)
    train = rng.choice(len(GRID), 60, replace=False)
    y = bowl(X[train]) + rng.normal(0, 0.02, 60)
    fixed = GPSurrogate(SPACE, seed=0).fit([GRID[i] for i in train], y, noise_std=0.02)
    assert fixed.rung_noise_std() == pytest.approx(0.02)
    _, latent = fixed.predict([GRID[train[0]]])
    _, observed = fixed.predict([GRID[train[0]]], include_noise=True)
    assert observed[0] == pytest.approx(np.hypot(latent[0], 0.02))
    with pytest.raises(ValueError):
        GPSurrogate(SPACE).fit(GRID[:3], [0.1, 0.2, 0.3], noise_std=0.0)


def test_posterior_samples_match_the_posterior(fitted) -> None:
    surrogate, _, held_out, _ = fitted
    probe = [GRID[i] for i in held_out[:5]]
    draws = surrogate.sample_posterior(probe, 4000, seed=1)
    mean, std = surrogate.predict(probe)
    assert draws.shape == (4000, 5)
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * std.max() / np.sqrt(4000) + 1e-6)
    np.testing.assert_allclose(draws.std(0), std, rtol=0.1)
    np.testing.assert_array_equal(draws, surrogate.sample_posterior(probe, 4000, seed=1))  # seeded


def test_incumbent_is_the_best_posterior_mean_not_the_luckiest_score() -> None:
    """A lucky score on a poor config does not make it the incumbent when the noise is known to be large."""
    rng = np.random.default_rng(3)
    train = rng.choice(len(GRID), 40, replace=False)
    y = bowl(X[train]) + rng.normal(0, 0.002, 40)
    worst = int(np.argmin(bowl(X[train])))
    y[worst] = y.max() + 0.03  # one lucky draw
    noisy = GPSurrogate(SPACE, seed=0).fit([GRID[i] for i in train], y, noise_std=0.05)
    assert noisy.incumbent() != GRID[train[worst]]
    assert noisy.incumbent() == GRID[train[int(np.argmax(noisy.predict([GRID[i] for i in train])[0]))]]


def test_a_restart_whose_line_search_meets_a_singular_kernel_fails_alone(monkeypatch) -> None:
    """Seen summarizing a family study (accuracies shuffled across configs at several rungs): L-BFGS stepped
    where the kernel matrix is not positive definite and the whole summary crashed. That restart now keeps its
    starting hyper-parameters and loses to one that succeeded; if every one fails, the GP is the prior's."""
    import torch
    from linear_operator.utils.errors import NotPSDError

    rng = np.random.default_rng(1)
    train = rng.permutation(len(GRID))[:40]
    configs, y = [GRID[i] for i in train], bowl(X[train]) + rng.normal(0.0, 0.002, len(train))
    real, failing = torch.optim.LBFGS.step, {"left": 1}

    def step(self, closure):
        if failing["left"]:
            failing["left"] -= 1
            raise NotPSDError("not positive definite")
        return real(self, closure)

    monkeypatch.setattr(torch.optim.LBFGS, "step", step)
    start = GPSurrogate(SPACE, seed=0, n_restarts=1)._model().covar_module.base_kernel.lengthscale.detach().clone()
    one_failed = GPSurrogate(SPACE, seed=0, n_restarts=2).fit(configs, y)
    assert not torch.allclose(one_failed.model.covar_module.base_kernel.lengthscale, start)  # the fitted restart
    assert r_squared(bowl(X[train]), one_failed.predict(configs)[0]) > 0.9
    failing["left"] = 3
    all_failed = GPSurrogate(SPACE, seed=0, n_restarts=3).fit(configs, y)
    assert torch.allclose(all_failed.model.covar_module.base_kernel.lengthscale, start)
    assert np.all(np.isfinite(all_failed.predict(configs)[0]))
