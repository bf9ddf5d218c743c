"""The gpytorch side of the surrogate (``surrogate.GPSurrogate`` is its front): the exact GP model, its
numerical settings and the fit of its hyper-parameters.

* ``ExactGPModel`` -- Matern-5/2 with one length scale per dimension (ARD), with several rungs times a rung
  kernel (``RungKernel``: positive correlations between rungs, with a Beta prior) and a constant mean per
  rung (``RungMean``); fixed (measured) or learnt noise; BoTorch's priors for unit-cube inputs and
  standardised targets.
* ``gp_settings`` -- exact Cholesky algebra on one intra-op thread: deterministic, and fast on busy cores.
* ``maximise_marginal_likelihood`` -- L-BFGS on the exact marginal log likelihood (plus the log priors).

Everything is float64.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import gpytorch
import torch
from gpytorch.constraints import GreaterThan, Interval, Positive
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood
from gpytorch.means import ConstantMean, Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior, Prior
from linear_operator.operators import InterpolatedLinearOperator
from linear_operator.utils.errors import NotPSDError
from scipy.stats import beta as beta_distribution

MIN_NOISE = 1e-4  # noise variance floor, in standardised units: keeps the Cholesky well conditioned
_INITIAL_LENGTHSCALE = 0.5
_INITIAL_NOISE = 1e-2
_LBFGS_ITERATIONS = 50
_CHOLESKY_ALWAYS = 100_000  # use Cholesky (exact, deterministic) instead of CG/Lanczos at every size
_RHO_EDGE = 1e-6  # a rung correlation stays in [1e-6, 1 - 1e-6]: finite Beta log densities at every prior

BetaParams = tuple[float, float]  # (a, b) of a Beta(a, b) prior on a correlation: mean a / (a + b)
# The correlation of two adjacent rungs' latent accuracies, a priori. benchmarks/RESULTS.md measured the
# rankings of consecutive rungs at Kendall's tau 0.74 (quick vs smoke; Pearson sin(pi tau / 2) = 0.92 for
# Gaussian scores), about as close as two seeds of one rung (0.69-0.76), with the seed noise included: the
# latent functions agree at least that well. A rung of another recipe: Beta(8, 2), mean 0.80, 90 % in
# 0.57-0.96. A rung that continues the lower rung's schedule (``NAME-eK`` then ``NAME``: the same networks,
# trained on) agrees more: Beta(18, 2), mean 0.90, 90 % in 0.77-0.98. Both vanish at 0 and 1, so the fit
# stays inside (0, 1).
RUNG_PRIOR: BetaParams = (8.0, 2.0)
CONTINUED_RUNG_PRIOR: BetaParams = (18.0, 2.0)


class RungMean(Mean):
    """A constant per rung: cheaper rungs score lower on average, which says nothing about the ranking."""

    def __init__(self, rungs: int) -> None:
        super().__init__()
        self.register_parameter("constants", torch.nn.Parameter(torch.zeros(rungs, dtype=torch.float64)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.constants[x[..., -1].round().long()]


def rung_priors(continues: Sequence[bool]) -> list[BetaParams]:
    """The prior of each adjacent rung pair: ``CONTINUED_RUNG_PRIOR`` where rung ``r + 1`` continues rung
    ``r``'s schedule (``Ladder.continues(r)``), else ``RUNG_PRIOR``."""
    return [CONTINUED_RUNG_PRIOR if c else RUNG_PRIOR for c in continues]


def prior_interval(params: BetaParams, mass: float = 0.9) -> tuple[float, float]:
    """The central ``mass`` interval of a Beta prior: how far the data must move a correlation to matter."""
    low, high = beta_distribution.interval(mass, *params)
    return float(low), float(high)


class BetaPrior(Prior):
    """Beta(a, b) on values in (0, 1), elementwise (gpytorch 1.15 has none): ``log_prob`` is all a marginal
    likelihood needs."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        torch.nn.Module.__init__(self)
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float64))
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float64))
        self._transform = None

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.lgamma(self.a) + torch.lgamma(self.b) - torch.lgamma(self.a + self.b)
        return (self.a - 1) * torch.log(x) + (self.b - 1) * torch.log1p(-x) - norm

    @property
    def mean(self) -> torch.Tensor:
        return self.a / (self.a + self.b)


class RungKernel(Kernel):
    """Covariance between rungs ``B = diag(s) C diag(s)``, positive by construction.

    ``C[i, j] = rho_i * ... * rho_(j-1)`` for ``i < j``: each adjacent pair of rungs has a correlation
    ``rho`` in (0, 1) (a sigmoid of a free parameter), and rungs further apart are correlated through the
    rungs between them, as a chain z_(r+1) = rho_r z_r + sqrt(1 - rho_r^2) e_r is; such a ``C`` is positive
    definite for every ``rho`` in (0, 1). An ``IndexKernel`` of rank 1 has a free sign and no prior, so with
    little data it fits any correlation in (-1, 1); two rungs of one network's training do not rank it in
    opposite orders. Each ``rho`` has a Beta prior (``priors``, one per pair). A pair the data cannot
    identify (``pinned``: too few networks at both rungs) is held at its prior mean and not fitted.
    ``s``: the scale of each rung relative to the top (whose scale is the output scale), LogNormal(0, 1).
    """

    def __init__(self, rungs: int, priors: Sequence[BetaParams], pinned: Sequence[bool] | None = None) -> None:
        super().__init__()
        if len(priors) != rungs - 1:
            raise ValueError(f"rung_prior: need {rungs - 1} (a, b) pairs, one per adjacent pair of rungs")
        if any(a <= 0 or b <= 0 for a, b in priors):
            raise ValueError(f"rung_prior: Beta parameters must be positive, got {list(priors)}")
        self.rungs = rungs
        self.register_parameter("raw_rho", torch.nn.Parameter(torch.zeros(rungs - 1, dtype=torch.float64)))
        self.register_constraint("raw_rho", Interval(_RHO_EDGE, 1 - _RHO_EDGE))  # a sigmoid, never 0 or 1
        self.register_parameter("raw_scale", torch.nn.Parameter(torch.zeros(rungs - 1, dtype=torch.float64)))
        self.register_constraint("raw_scale", Positive())
        prior = BetaPrior(torch.tensor([p[0] for p in priors]), torch.tensor([p[1] for p in priors]))
        self.register_prior("rho_prior", prior, RungKernel._rho_of)  # functions, not lambdas: picklable
        self.register_prior("scale_prior", LogNormalPrior(0.0, 1.0), RungKernel._scale_of)
        self.register_buffer("pinned", torch.as_tensor(list(pinned or [False] * (rungs - 1)), dtype=torch.bool))
        ones = torch.ones(rungs - 1, dtype=torch.float64)
        self.initialize(raw_rho=self.raw_rho_constraint.inverse_transform(prior.mean.clamp(0.01, 0.99)),
                        raw_scale=self.raw_scale_constraint.inverse_transform(ones))

    @staticmethod
    def _rho_of(m: RungKernel) -> torch.Tensor:
        return m.rho

    @staticmethod
    def _scale_of(m: RungKernel) -> torch.Tensor:
        return m.raw_scale_constraint.transform(m.raw_scale)

    @property
    def rho(self) -> torch.Tensor:
        """The correlation of each adjacent pair: the prior mean where pinned, else the fitted value."""
        fitted = self.raw_rho_constraint.transform(self.raw_rho)
        return torch.where(self.pinned, self.rho_prior.mean.to(fitted), fitted)

    def correlation(self) -> torch.Tensor:
        """``C``: the product of the adjacent correlations between each two rungs."""
        rho, ones = self.rho, self.rho.new_ones(())
        rows = [torch.stack([rho[min(i, j):max(i, j)].prod() if i != j else ones for j in range(self.rungs)])
                for i in range(self.rungs)]
        return torch.stack(rows)

    def covar_matrix(self) -> torch.Tensor:
        s = torch.cat([self._scale_of(self), self.raw_scale.new_ones(1)])
        return s[:, None] * self.correlation() * s[None, :]

    def forward(self, i1: torch.Tensor, i2: torch.Tensor, **params) -> InterpolatedLinearOperator:
        i1, i2 = i1.long(), i2.long()
        batch = torch.broadcast_shapes(i1.shape[:-2], i2.shape[:-2])
        return InterpolatedLinearOperator(self.covar_matrix(), i1.expand(batch + i1.shape[-2:]),
                                          right_interp_indices=i2.expand(batch + i2.shape[-2:]))


class ExactGPModel(gpytorch.models.ExactGP):
    """Matern-5/2 with one length scale per dimension (ARD); with several rungs, times a rung kernel.

    Priors as BoTorch uses them for unit-cube inputs and standardised targets: length scales Gamma(3, 6)
    (mode 1/3 of a factor's range), output scale Gamma(2, 0.15), learnt noise variance LogNormal(-4, 1)
    with a floor of ``MIN_NOISE``. The rung kernel (``RungKernel``) starts at its prior mean; ``rung_prior``:
    its Beta prior per adjacent pair of rungs (default ``RUNG_PRIOR`` for all), ``pinned``: the pairs held at
    the prior mean.
    """

    def __init__(self, train_x: torch.Tensor | None, train_y: torch.Tensor | None, dims: int, rungs: int = 1,
                 noise: torch.Tensor | None = None, rung_prior: Sequence[BetaParams] | None = None,
                 pinned: Sequence[bool] | None = None) -> None:
        if noise is not None:
            likelihood = FixedNoiseGaussianLikelihood(noise=noise, learn_additional_noise=False)
        else:
            likelihood = GaussianLikelihood(noise_prior=LogNormalPrior(-4.0, 1.0), noise_constraint=GreaterThan(MIN_NOISE))
        super().__init__(train_x, train_y, likelihood)
        self.dims, self.rungs = dims, rungs
        matern = MaternKernel(nu=2.5, ard_num_dims=dims, active_dims=tuple(range(dims)),
                              lengthscale_prior=GammaPrior(3.0, 6.0))
        self.covar_module = ScaleKernel(matern, outputscale_prior=GammaPrior(2.0, 0.15))
        if rungs > 1:
            self.mean_module = RungMean(rungs)
            self.rung_covar = RungKernel(rungs, rung_prior or [RUNG_PRIOR] * (rungs - 1), pinned)
        else:
            self.mean_module = ConstantMean()
        self.double()
        matern.lengthscale = torch.full((1, dims), _INITIAL_LENGTHSCALE)
        self.covar_module.outputscale = 1.0
        if noise is None:
            self.likelihood.noise = _INITIAL_NOISE

    def forward(self, x: torch.Tensor) -> MultivariateNormal:
        covar = self.covar_module(x)
        if self.rungs > 1:
            covar = covar.mul(self.rung_covar(x[..., -1:].round().long()))
        return MultivariateNormal(self.mean_module(x), covar)


@contextmanager
def gp_settings() -> Iterator[None]:
    """Exact Cholesky algebra on one intra-op thread.

    Cholesky instead of CG/Lanczos keeps results exact and deterministic. The matrices are small (hundreds
    of points), so extra threads only add synchronisation, and on a machine whose cores are busy training
    models they slow each operation down a hundredfold.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with gpytorch.settings.max_cholesky_size(_CHOLESKY_ALWAYS):
            yield
    finally:
        torch.set_num_threads(threads)


def maximise_marginal_likelihood(model: ExactGPModel) -> float:
    """L-BFGS on the negative exact marginal log likelihood (with priors); returns the final loss. A line
    search can step where the kernel matrix is numerically singular (seen on accuracies shuffled across a
    family study's configs, each at several rungs): the model then keeps its starting hyper-parameters and the
    fit counts as failed (loss inf), so another restart is chosen where one succeeded."""
    start = copy.deepcopy(model.state_dict())
    model.train()
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    optimizer = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=_LBFGS_ITERATIONS, line_search_fn="strong_wolfe"
    )
    x, y = model.train_inputs[0], model.train_targets

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = -mll(model(x), y)
        loss.backward()
        return loss

    try:
        with gp_settings():
            optimizer.step(closure)
            with torch.no_grad():
                loss = float(-mll(model(x), y))
    except NotPSDError:
        model.load_state_dict(start)
        loss = math.inf
    model.eval()
    return loss if math.isfinite(loss) else math.inf
