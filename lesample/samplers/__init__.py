"""Inner-loop samplers for ``rho(y; x)`` and the driver that runs them over chains.

``build_sampler(name, target, ...)`` builds any kernel from a ``LocalEntropyTarget``; the
per-kernel factories (``ula``, ``mala``, ``baoab``, ``hj``, ``numpyro_hmc``) take the
target's functions directly.
"""

from __future__ import annotations

from lesample.samplers.baoab import baoab
from lesample.samplers.base import SamplingAlgorithm
from lesample.samplers.driver import DivergenceError, DivergenceWarning, Trace, run_chains, sample
from lesample.samplers.hj import hj
from lesample.samplers.mala import mala
from lesample.samplers.numpyro_hmc import numpyro_hmc
from lesample.samplers.ula import ula

__all__ = [
    "SAMPLERS",
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
]

#: Sampler names accepted by ``build_sampler`` and ``local_entropy_grad``, with the
#: default estimator of ``E_rho[y]`` each is paired with.
SAMPLERS = {
    "ula": "exponential",
    "sgld": "exponential",
    "mala": "uniform",
    "baoab": "uniform",
    "hj": "last",
    "hmc": "uniform",
    "nuts": "uniform",
}


def build_sampler(name: str, target, step_size=0.1, **options) -> SamplingAlgorithm:
    """Build the kernel ``name`` for ``target`` (a ``LocalEntropyTarget``).

    ``step_size`` defaults to the reference Entropy-SGD inner step ``eta' = 0.1``; for NUTS
    and HMC it is the initial step that warm-up adapts. Options: ``noise`` (ula, sgld, baoab),
    ``friction`` (baoab), ``num_warmup``, ``num_leapfrog``, ``target_accept_prob``,
    ``max_tree_depth``, ``dense_mass`` (hmc, nuts).
    """
    if name not in SAMPLERS:
        raise ValueError(f"`sampler` must be one of {sorted(SAMPLERS)}; got {name!r}.")
    if name in ("ula", "sgld"):
        return ula(target.grad_H, step_size, target.beta, **options)
    if name == "mala":
        return mala(target.value_and_grad_H, step_size, target.beta, **options)
    if name == "baoab":
        return baoab(target.grad_H, step_size, target.beta, **options)
    if name == "hj":
        return hj(target.grad_H, step_size, **options)
    return numpyro_hmc(target.H, target.beta, algo=name.upper(), step_size=step_size, **options)
