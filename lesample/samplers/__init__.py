"""Inner-loop samplers for ``rho(y; x)`` and the driver that runs them over chains.

``build_sampler(name, target, ...)`` builds any kernel of ``KERNELS`` from a
``LocalEntropyTarget``; the per-kernel factories (``ula``, ``mala``, ``baoab``, ``hj``,
``numpyro_hmc``) take the target's functions directly. A user's kernel is any
``SamplingAlgorithm`` (docs/architecture.md, "add a sampler").

Modules are named for the dynamics they hold, not for the factory they export (which would
shadow them): ``overdamped`` (ULA/SGLD), ``descent`` (HJ), ``metropolis`` (MALA),
``underdamped`` (BAOAB), ``numpyro_kernels`` (HMC/NUTS), ``driver`` (``run_chains``,
``sample``), ``base`` (the protocol).
"""

from __future__ import annotations

import warnings

from lesample.checks import check_choice
from lesample.samplers.base import SamplingAlgorithm
from lesample.samplers.descent import HJInfo, HJState, hj
from lesample.samplers.driver import (
    DivergenceError,
    DivergenceWarning,
    Trace,
    report_divergence,
    run_chains,
    sample,
)
from lesample.samplers.metropolis import MALAInfo, MALAState, mala
from lesample.samplers.numpyro_kernels import HMCInfo, HMCState, numpyro_hmc
from lesample.samplers.overdamped import ULAInfo, ULAState, ula
from lesample.samplers.underdamped import BAOABInfo, BAOABState, baoab

__all__ = [
    "KERNELS",
    "SamplingAlgorithm",
    "Trace",
    "DivergenceError",
    "DivergenceWarning",
    "build_sampler",
    "report_divergence",
    "run_chains",
    "sample",
    "ula",
    "mala",
    "baoab",
    "hj",
    "numpyro_hmc",
    "ULAState",
    "ULAInfo",
    "HJState",
    "HJInfo",
    "MALAState",
    "MALAInfo",
    "BAOABState",
    "BAOABInfo",
    "HMCState",
    "HMCInfo",
]

#: Kernel names accepted by ``build_sampler`` and ``local_entropy_grad`` ("sgld" is ULA
#: driven by mini-batch gradients).
KERNELS = ("ula", "sgld", "mala", "baoab", "hj", "hmc", "nuts")


def build_sampler(name: str, target, step_size=0.1, **options) -> SamplingAlgorithm:
    """Build the kernel ``name`` (one of ``KERNELS``) for ``target`` (a ``LocalEntropyTarget``).

    ``step_size`` defaults to the reference Entropy-SGD inner step ``eta' = 0.1``; for NUTS
    and HMC it is the initial step that warm-up adapts. Options: ``noise`` (ula, sgld, baoab),
    ``friction`` (baoab), ``num_warmup``, ``num_leapfrog``, ``trajectory_length``,
    ``target_accept_prob``, ``max_tree_depth``, ``dense_mass`` (hmc, nuts). The factory
    checks the arguments.
    """
    check_choice("sampler", name, KERNELS)
    if name in ("ula", "sgld"):
        return ula(target.grad_H, step_size, target.beta, **options)
    if name == "mala":
        return mala(target.value_and_grad_H, step_size, target.beta, **options)
    if name == "baoab":
        return baoab(target.grad_H, step_size, target.beta, **options)
    if name == "hj":
        return hj(target.grad_H, step_size, **options)
    return numpyro_hmc(target.H, target.beta, algo=name.upper(), step_size=step_size, **options)


def deprecated_samplers(stacklevel: int = 2):
    """The deprecated ``SAMPLERS`` table (it mapped a sampler to its default estimator), with
    a ``DeprecationWarning`` pointing ``stacklevel`` frames up; ``lesample`` re-exports it."""
    from lesample.inner import DEFAULT_ESTIMATORS

    warnings.warn("`SAMPLERS` is deprecated: the sampler names are "
                  "`lesample.samplers.KERNELS`, the default estimator of each is "
                  "`lesample.inner.DEFAULT_ESTIMATORS`.", DeprecationWarning,
                  stacklevel=stacklevel + 1)
    return DEFAULT_ESTIMATORS


def __getattr__(name):
    if name == "SAMPLERS":
        return deprecated_samplers(stacklevel=2)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
