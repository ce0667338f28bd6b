"""lesample: local-entropy optimisation with the inner loop treated as an MCMC problem.

Conventions (docs/conventions.md): ``gamma`` is the scope, ``beta`` the inverse temperature,
``rho(y; x) ∝ exp(-beta [f(y) + |x - y|^2 / (2 gamma)])`` and
``grad f_gamma(x) = (x - E_rho[y]) / gamma``.
"""

from lesample import adaptation, optim, stopping
from lesample.estimators import (
    Estimator,
    ExponentialAverage,
    LastIterate,
    TimeAverage,
    chain_mean,
)
from lesample.gaussian import GaussianCase
from lesample.inner import DEFAULT_ESTIMATORS, InnerResult, estimate_mean
from lesample.kmeans import LocalEntropyKMeans
from lesample.local_entropy import LocalEntropyInfo, local_entropy_grad
from lesample.samplers import (
    KERNELS,
    DivergenceError,
    DivergenceWarning,
    SamplingAlgorithm,
    Trace,
    baoab,
    build_sampler,
    hj,
    mala,
    numpyro_hmc,
    run_chains,
    sample,
    ula,
)
from lesample.target import LocalEntropyTarget, local_entropy_target, rho2_target

__version__ = "0.1.0"

__all__ = [
    "GaussianCase",
    "LocalEntropyKMeans",
    "local_entropy_grad",
    "LocalEntropyInfo",
    "LocalEntropyTarget",
    "local_entropy_target",
    "rho2_target",
    "estimate_mean",
    "InnerResult",
    "KERNELS",
    "DEFAULT_ESTIMATORS",
    "SamplingAlgorithm",
    "Trace",
    "DivergenceError",
    "DivergenceWarning",
    "build_sampler",
    "run_chains",
    "sample",
    "ula",
    "mala",
    "baoab",
    "hj",
    "numpyro_hmc",
    "Estimator",
    "TimeAverage",
    "ExponentialAverage",
    "LastIterate",
    "chain_mean",
    "optim",
    "adaptation",
    "stopping",
]


def __getattr__(name):
    if name == "SAMPLERS":
        from lesample.samplers import deprecated_samplers

        return deprecated_samplers(stacklevel=2)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
