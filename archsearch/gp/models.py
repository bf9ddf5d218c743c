"""The gpytorch side of the surrogate (``surrogate.GPSurrogate`` is its front): the exact GP model, its
numerical settings and the fit of its hyper-parameters.

* ``ExactGPModel`` -- Matern-5/2 with one length scale per dimension (ARD), with several rungs times a rung
  kernel (``IndexKernel`` of rank 1) and a constant mean per rung (``RungMean``); fixed (measured) or learnt
  noise; BoTorch's priors for unit-cube inputs and standardised targets.
* ``gp_settings`` -- exact Cholesky algebra on one intra-op thread: deterministic, and fast on busy cores.
* ``maximise_marginal_likelihood`` -- L-BFGS on the exact marginal log likelihood (plus the log priors).

Everything is float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import gpytorch
import torch
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import IndexKernel, MaternKernel, ScaleKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood
from gpytorch.means import ConstantMean, Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior

MIN_NOISE = 1e-4  # noise variance floor, in standardised units: keeps the Cholesky well conditioned
_INITIAL_LENGTHSCALE = 0.5
_INITIAL_NOISE = 1e-2
_LBFGS_ITERATIONS = 50
_CHOLESKY_ALWAYS = 100_000  # use Cholesky (exact, deterministic) instead of CG/Lanczos at every size


class RungMean(Mean):
    """A constant per rung: cheaper rungs score lower on average, which says nothing about the ranking."""

    def __init__(self, rungs: int) -> None:
        super().__init__()
        self.register_parameter("constants", torch.nn.Parameter(torch.zeros(rungs, dtype=torch.float64)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.constants[x[..., -1].round().long()]


class ExactGPModel(gpytorch.models.ExactGP):
    """Matern-5/2 with one length scale per dimension (ARD); with several rungs, times a rung kernel.

    Priors as BoTorch uses them for unit-cube inputs and standardised targets: length scales Gamma(3, 6)
    (mode 1/3 of a factor's range), output scale Gamma(2, 0.15), learnt noise variance LogNormal(-4, 1)
    with a floor of ``MIN_NOISE``. The rung kernel starts at full correlation between rungs.
    """

    def __init__(self, train_x: torch.Tensor | None, train_y: torch.Tensor | None, dims: int, rungs: int = 1,
                 noise: torch.Tensor | None = None) -> None:
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
            self.rung_covar = IndexKernel(num_tasks=rungs, rank=1)
        else:
            self.mean_module = ConstantMean()
        self.double()
        matern.lengthscale = torch.full((1, dims), _INITIAL_LENGTHSCALE)
        self.covar_module.outputscale = 1.0
        if rungs > 1:
            self.rung_covar.covar_factor.data.fill_(1.0)
            self.rung_covar.var = torch.full((rungs,), 0.05)
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
    """L-BFGS on the negative exact marginal log likelihood (with priors); returns the final loss."""
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

    with gp_settings():
        optimizer.step(closure)
        with torch.no_grad():
            loss = float(-mll(model(x), y))
    model.eval()
    return loss if math.isfinite(loss) else math.inf
