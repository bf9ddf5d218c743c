"""A Gaussian-process surrogate of accuracy over the factor space: ``GPSurrogate``, fit and predict.

The seed paper models accuracy as a smooth function of the global factors with a Matern GP; the same fitted
model gives three things this tool needs: 1-D marginals and 2-D joint maps (the plots), ARD length scales
(which factor matters most) and a calibrated uncertainty for expected improvement (the proposer).

The GP works on ``space.encode`` coordinates (every factor scaled to [0, 1], plus the variant for v1), so
one length scale means the same fraction of every factor's range. Targets are standardised internally and
every prediction is returned in the caller's units. Everything is float64 and uses exact Cholesky
inference, so a fit is deterministic given its seed and data.

Two things make its answers hold up against noisy, multi-fidelity evidence:

* **Measured noise.** ``fit(..., noise_std=...)`` takes each observation's measurement noise (the seed-to-
  seed standard deviation of its fidelity, measured, not learnt from a handful of points) as fixed noise.
  Without it the noise is learnt, as a plain GP does.
* **Fidelities (rungs).** With ``fidelities > 1`` every observation carries the rung it was trained at and
  the kernel is the product of the factor kernel and a rung kernel (``models.RungKernel``: a scale per rung
  and a correlation in (0, 1) between adjacent rungs), with a constant mean per rung: an intrinsic
  coregionalisation model, the discrete-fidelity form of BoTorch's multi-fidelity GP. Cheap rungs then
  inform the prediction at the top rung as far as the rungs agree. ``predict`` and everything else report
  the top rung unless asked for another.
* **A correlation is fitted only where the data identify it.** Scores at one rung say nothing about how
  they move to the next; that takes networks scored at both (promoted ones). Each adjacent pair's
  correlation has a Beta prior (``rung_prior``; ``models.RUNG_PRIOR``, or ``CONTINUED_RUNG_PRIOR`` where the
  upper rung continues the lower one's schedule), and with fewer than ``MIN_SHARED_NETWORKS`` networks at
  both rungs it is held at the prior mean, not fitted. ``rung_correlation_report`` says which, and from how
  many networks.

The gpytorch model, its settings and its hyper-parameter fit are in ``models``; expected improvement and the
proposer that maximises it in ``acquisition``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gpytorch
import numpy as np
import torch

from ..model.config import ArchConfig
from ..model.space import FACTORS, FactorSpace
from .models import (
    MIN_NOISE,
    RUNG_PRIOR,
    BetaParams,
    ExactGPModel,
    gp_settings,
    maximise_marginal_likelihood,
    prior_interval,
)

# The joint-factor maps of the seed paper (x factor, y factor).
JOINT_PAIRS: tuple[tuple[str, str], ...] = (
    ("resolution", "width"),
    ("resolution", "mv2_depth"),
    ("resolution", "vit_depth"),
    ("width", "vit_depth"),
)

# ExactGP evaluates the joint (train + test) kernel matrix, so predict in chunks of about the training size.
_PREDICT_CHUNK = 256
# Networks scored at both of two rungs below which their correlation is the prior's: two points always lie
# on a line, so a correlation needs a third to be evidence.
MIN_SHARED_NETWORKS = 3


@dataclass(frozen=True)
class RungCorrelation:
    """The correlation of rungs ``lower`` and ``lower + 1`` as the surrogate uses it, and where it came from:
    ``source`` "fitted" (from ``shared`` networks scored at both) or "prior" (too few: the prior mean)."""

    lower: int
    value: float
    source: str
    shared: int
    prior_mean: float
    prior_interval: tuple[float, float]  # the prior's central 90 %

    def describe(self) -> str:
        low, high = self.prior_interval
        prior = f"prior {self.prior_mean:.2f}, 90 % in {low:.2f}-{high:.2f}"
        networks = f"{self.shared} network{'s' if self.shared != 1 else ''} at both rungs"
        if self.source == "fitted":
            return f"{self.value:.2f}, fitted from {networks} ({prior})"
        return f"{self.value:.2f}, the prior's ({networks}, {MIN_SHARED_NETWORKS} needed to fit it; {prior})"


class GPSurrogate:
    """Exact GP regression of accuracy on encoded configs, scikit-learn style (``fit`` / ``predict``).

    Hyper-parameters maximise the exact marginal log likelihood (plus the log priors) with L-BFGS, from
    fixed initial values (length scales 0.5, output scale 1, noise 0.01) and from ``n_restarts - 1`` seeded
    log-uniform length scales in [0.1, 2]; the best optimum is kept.

    ``rung_prior``: the Beta(a, b) prior of the correlation of adjacent rungs, one ``(a, b)`` for all pairs
    or one per pair (default ``models.RUNG_PRIOR``; see ``models.rung_priors`` for a ladder's).

    Degenerate data do not fail: with fewer than two observations, or constant accuracies, the marginal
    likelihood has no informative optimum, so hyper-parameters stay at their initial values and the target
    scale is 1 (predictions: the observed mean, with prior uncertainty of one accuracy unit). With no
    observation at all, predictions are the prior (mean 0, std 1).
    """

    def __init__(self, space: FactorSpace, seed: int = 0, n_restarts: int = 3, fidelities: int = 1,
                 rung_prior: BetaParams | Sequence[BetaParams] | None = None) -> None:
        if fidelities < 1:
            raise ValueError(f"fidelities: need at least 1, got {fidelities}")
        self.space = space
        self.seed = seed
        self.n_restarts = max(1, n_restarts)
        self.fidelities = fidelities
        self.rung_prior = self._check_rung_prior(rung_prior)
        self._shared = np.zeros(fidelities - 1, dtype=np.int64)  # networks at both rungs, per adjacent pair
        self._names = FACTORS + (("variant",) if space.dims > len(FACTORS) else ())
        self._configs: list[ArchConfig] = []
        self._rungs = np.zeros(0, dtype=np.int64)
        self._noise_std: np.ndarray | None = None
        self._y = np.zeros(0)
        self._y_mean, self._y_scale = 0.0, 1.0
        self.model = self._model()

    @property
    def top(self) -> int:
        return self.fidelities - 1

    def _check_rung_prior(self, prior: BetaParams | Sequence[BetaParams] | None) -> list[BetaParams]:
        pairs = self.fidelities - 1
        if prior is None:
            return [RUNG_PRIOR] * pairs
        if len(prior) == 2 and all(isinstance(v, (int, float, np.number)) for v in prior):
            prior = [prior] * pairs  # one (a, b) for every pair
        out = [(float(a), float(b)) for a, b in prior]
        if len(out) != pairs or any(not (a > 0 and b > 0) for a, b in out):
            raise ValueError(f"rung_prior: need one positive (a, b) or {pairs} of them, got {prior}")
        return out

    # ---- fitting --------------------------------------------------------------------------------
    def fit(self, configs: Sequence[ArchConfig], accuracies: Sequence[float], rungs: Sequence[int] | None = None,
            noise_std: Sequence[float] | float | None = None) -> GPSurrogate:
        """Fit hyper-parameters and condition on ``(configs, accuracies)``; returns ``self``.

        ``rungs``: the rung of each observation (default: all at the top rung). ``noise_std``: the measured
        noise of each observation (or one value for all), in accuracy units; None learns the noise.
        """
        configs, y = list(configs), np.asarray(accuracies, dtype=np.float64).reshape(-1)
        if len(configs) != len(y):
            raise ValueError(f"fit: {len(configs)} configs but {len(y)} accuracies")
        if not np.all(np.isfinite(y)):
            raise ValueError("fit: accuracies must be finite")
        self._configs, self._y = configs, y
        self._rungs = self._check_rungs(rungs, len(y))
        self._shared = self._count_shared()
        self._noise_std = None if noise_std is None else np.broadcast_to(
            np.asarray(noise_std, dtype=np.float64), y.shape).copy()
        if self._noise_std is not None and not np.all(self._noise_std > 0):
            raise ValueError("fit: noise_std must be positive")
        self._y_mean = float(y.mean()) if len(y) else 0.0
        spread = float(y.std()) if len(y) > 1 else 0.0
        self._y_scale = spread if spread > 0 else 1.0
        if len(y) < 2 or spread == 0:
            self.model = self._model()
            return self
        rng = np.random.default_rng(self.seed)
        fits = []
        for restart in range(self.n_restarts):
            model = self._model()
            if restart:
                starts = np.exp(rng.uniform(math.log(0.1), math.log(2.0), self.space.dims))
                model.covar_module.base_kernel.lengthscale = torch.as_tensor(starts).reshape(1, -1)
            fits.append((maximise_marginal_likelihood(model), model))
        self.model = min(fits, key=lambda fit: fit[0])[1]  # the first of equal optima
        return self

    def _check_rungs(self, rungs: Sequence[int] | None, n: int) -> np.ndarray:
        if rungs is None:
            return np.full(n, self.top, dtype=np.int64)
        out = np.asarray(rungs, dtype=np.int64).reshape(-1)
        if len(out) != n or (n and (out.min() < 0 or out.max() > self.top)):
            raise ValueError(f"rungs: need {n} values in 0..{self.top}")
        return out

    def _count_shared(self) -> np.ndarray:
        at = [{c for c, r in zip(self._configs, self._rungs) if r == rung} for rung in range(self.fidelities)]
        return np.array([len(at[r] & at[r + 1]) for r in range(self.top)], dtype=np.int64)

    def _model(self) -> ExactGPModel:
        x, z = self._train_tensors()
        noise = None
        if self._noise_std is not None and len(self._y):
            noise = torch.as_tensor((self._noise_std / self._y_scale) ** 2).clamp_min(MIN_NOISE)
        return ExactGPModel(x, z, self.space.dims, self.fidelities, noise, self.rung_prior,
                            pinned=(self._shared < MIN_SHARED_NETWORKS).tolist())

    def condition(self, configs: Sequence[ArchConfig], accuracies: Sequence[float],
                  rungs: Sequence[int] | None = None) -> GPSurrogate:
        """A copy that also conditions on ``(configs, accuracies)`` with the hyper-parameters unchanged.

        For fantasies (e.g. constant-liar values of pending trials): made-up data must shift the posterior
        but not the length scales or noise learnt from real observations. With fixed noise, a fantasy
        carries the noise of the rung it is at (the mean noise of the real observations there).
        """
        configs = list(configs)
        y_new = np.asarray(accuracies, dtype=np.float64).reshape(-1)
        if len(configs) != len(y_new):
            raise ValueError(f"condition: {len(configs)} configs but {len(y_new)} accuracies")
        rungs_new = self._check_rungs(rungs, len(y_new))
        other = GPSurrogate(self.space, self.seed, self.n_restarts, self.fidelities, self.rung_prior)
        other._shared = self._shared  # what the hyper-parameters were fitted from, not the fantasies
        other._configs, other._y = self._configs + configs, np.concatenate([self._y, y_new])
        other._rungs = np.concatenate([self._rungs, rungs_new])
        if self._noise_std is not None:
            other._noise_std = np.concatenate([self._noise_std, [self.rung_noise_std(r) for r in rungs_new]])
        other._y_mean, other._y_scale = self._y_mean, self._y_scale
        other.model = other._model()
        other.model.load_state_dict(self.model.state_dict(), strict=False)
        return other

    def rung_noise_std(self, rung: int | None = None) -> float:
        """The observation noise (std, accuracy units) at a rung: the fixed noise given there (its mean),
        else the learnt noise."""
        rung = self.top if rung is None else rung
        if self._noise_std is not None and len(self._noise_std):
            at = self._noise_std[self._rungs == rung]
            return float(at.mean() if len(at) else self._noise_std.mean())
        return float(self.model.likelihood.noise.detach().mean().sqrt()) * self._y_scale

    def _encode(self, configs: Sequence[ArchConfig], rungs: np.ndarray | int) -> np.ndarray:
        x = self.space.encode(list(configs))
        if self.fidelities > 1:
            x = np.concatenate([x, np.broadcast_to(np.asarray(rungs, dtype=np.float64), (len(x),))[:, None]], 1)
        return x

    def _train_tensors(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not self._configs:
            return None, None
        z = (self._y - self._y_mean) / self._y_scale
        return torch.as_tensor(self._encode(self._configs, self._rungs)), torch.as_tensor(z)

    # ---- prediction -----------------------------------------------------------------------------
    def predict(self, configs: Sequence[ArchConfig], include_noise: bool = False,
                rung: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std of accuracy at ``configs`` at ``rung`` (default the top): std of the
        latent function, or of a new observation with ``include_noise``."""
        rung = self.top if rung is None else rung
        return self._predict_encoded(self._encode(configs, rung), include_noise, rung)

    def _predict_encoded(self, x: np.ndarray, include_noise: bool = False,
                         rung: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        means, variances = [], []
        # debug(False): predicting at the training inputs (e.g. for summaries) is intended, not a mistake
        with gp_settings(), torch.no_grad(), gpytorch.settings.fast_pred_var(), gpytorch.settings.debug(False):
            for start in range(0, len(x), _PREDICT_CHUNK):
                posterior = self.model(torch.as_tensor(x[start : start + _PREDICT_CHUNK]))
                means.append(posterior.mean.numpy())
                variances.append(posterior.variance.clamp_min(0).numpy())
        mean = np.concatenate(means) if means else np.zeros(0)
        var = np.concatenate(variances) if variances else np.zeros(0)
        std = np.sqrt(var) * self._y_scale
        if include_noise:
            std = np.sqrt(std**2 + self.rung_noise_std(rung) ** 2)
        return mean * self._y_scale + self._y_mean, std

    def sample_posterior(self, configs: Sequence[ArchConfig], n_samples: int, seed: int = 0,
                         rung: int | None = None) -> np.ndarray:
        """``n_samples`` joint draws of the latent accuracy at ``configs`` (shape ``[n_samples, len(configs)]``):
        for quantities that depend on several configs at once, such as which of them is best."""
        rung = self.top if rung is None else rung
        x = torch.as_tensor(self._encode(configs, rung))
        self.model.eval()
        with gp_settings(), torch.no_grad(), gpytorch.settings.debug(False), torch.random.fork_rng():
            torch.manual_seed(seed)
            posterior = self.model(x)
            mean, covar = posterior.mean, posterior.covariance_matrix
            jitter = 1e-6 * covar.diagonal().mean().clamp_min(1e-12)  # the draws' round-off, not their spread
            chol = torch.linalg.cholesky(covar + jitter * torch.eye(len(x), dtype=covar.dtype))
            draws = mean + torch.randn(n_samples, len(x), dtype=covar.dtype) @ chol.T
        return draws.numpy() * self._y_scale + self._y_mean

    # ---- summaries ------------------------------------------------------------------------------
    def lengthscales(self) -> dict[str, float]:
        """ARD length scale per factor (plus ``variant`` for v1), in units of the factor's range:
        the shorter, the faster accuracy changes along that factor."""
        values = self.model.covar_module.base_kernel.lengthscale.detach().reshape(-1).tolist()
        return dict(zip(self._names, values))

    def rung_correlation(self) -> np.ndarray | None:
        """Correlation between the rungs' latent accuracies (``fidelities x fidelities``), as the model uses
        it: fitted where identified, the prior mean elsewhere (``rung_correlation_report`` says which).
        Positive by construction. None for one rung."""
        if self.fidelities == 1:
            return None
        with torch.no_grad():
            return self.model.rung_covar.correlation().numpy()

    def rung_correlation_source(self) -> list[str]:
        """Per adjacent pair of rungs: "fitted" (identified by at least ``MIN_SHARED_NETWORKS`` networks at
        both rungs) or "prior" (held at the prior mean)."""
        return ["fitted" if n >= MIN_SHARED_NETWORKS else "prior" for n in self._shared]

    def rung_correlation_report(self) -> list[RungCorrelation]:
        """Per adjacent pair of rungs: the correlation used, its source, the networks behind it and the
        prior to compare it with. Empty for one rung."""
        correlation = self.rung_correlation()
        return [RungCorrelation(r, float(correlation[r, r + 1]), source, int(self._shared[r]), a / (a + b),
                                prior_interval((a, b)))
                for r, (source, (a, b)) in enumerate(zip(self.rung_correlation_source(), self.rung_prior))]

    def incumbent(self) -> ArchConfig | None:
        """Among the configs observed at the top rung (all observed configs if none is), the one with the
        highest posterior mean there: the noise-aware best, not the luckiest score. None before any data."""
        if not self._configs:
            return None
        at_top = [c for c, r in zip(self._configs, self._rungs) if r == self.top] or self._configs
        distinct = list(dict.fromkeys(at_top))
        mean, _ = self.predict(distinct)
        return distinct[int(np.argmax(mean))]

    def marginal(
        self, factor: str, base: ArchConfig | None = None, n: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior along one factor with the others held at ``base``: ``(values, mean, std)``.

        ``base`` defaults to the incumbent, so the curve is a slice through the region the search cares
        about (a slice through the centre of the space may pass where nothing was trained). ``values`` are
        the factor's grid values, or ``n`` evenly spaced values over its range (the GP is defined between
        grid points too; smoother curves).
        """
        values = self._axis(factor, n)
        x = np.repeat(self._base_row(base), len(values), axis=0)
        x[:, FACTORS.index(factor)] = self._unit(factor, values)
        mean, std = self._predict_encoded(x)
        return values, mean, std

    def slice2d(
        self, factor_x: str, factor_y: str, base: ArchConfig | None = None, n: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Joint map of two factors, others held at ``base`` (as in ``marginal``):
        ``(xs, ys, mean[ny, nx], std[ny, nx])``."""
        if factor_x == factor_y:
            raise ValueError(f"slice2d: need two different factors, got {factor_x!r} twice")
        xs, ys = self._axis(factor_x, n), self._axis(factor_y, n)
        gx, gy = np.meshgrid(self._unit(factor_x, xs), self._unit(factor_y, ys))
        x = np.repeat(self._base_row(base), gx.size, axis=0)
        x[:, FACTORS.index(factor_x)] = gx.ravel()
        x[:, FACTORS.index(factor_y)] = gy.ravel()
        mean, std = self._predict_encoded(x)
        return xs, ys, mean.reshape(gx.shape), std.reshape(gx.shape)

    def _axis(self, factor: str, n: int | None) -> np.ndarray:
        if factor not in FACTORS:
            raise ValueError(f"factor: {factor!r} is not one of {', '.join(FACTORS)}")
        r = self.space.range(factor)
        if n is None:
            return np.asarray(r.values(), dtype=np.float64)
        return np.linspace(r.min, r.max, max(1, n))

    def _unit(self, factor: str, values: np.ndarray) -> np.ndarray:
        r = self.space.range(factor)
        return (values - r.min) / (r.max - r.min) if r.max > r.min else np.zeros_like(values)

    def _base_row(self, base: ArchConfig | None) -> np.ndarray:
        """Encoded ``base`` at the top rung; without one and without data, the middle grid value of every
        factor."""
        base = base or self.incumbent()
        if base is not None:
            return self._encode([base], self.top)
        row = np.full((1, self.space.dims), 0.0)
        for i, name in enumerate(FACTORS):
            values = self.space.range(name).values()
            row[0, i] = self._unit(name, np.float64(values[len(values) // 2]))
        return self._with_rung(row)

    def _with_rung(self, x: np.ndarray) -> np.ndarray:
        if self.fidelities == 1:
            return x
        return np.concatenate([x, np.full((len(x), 1), float(self.top))], 1)
