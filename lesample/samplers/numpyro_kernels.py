"""NumPyro HMC and NUTS as kernels of the common protocol (full batch).

Wraps NumPyro's functional core ``numpyro.infer.hmc.hmc(potential_fn, algo=...)`` with
``potential_fn = beta * H``. Warm-up (step-size and diagonal mass-matrix adaptation) runs
inside the first ``num_warmup`` calls of ``step``, so the driver's ``burn_in`` should be at
least ``num_warmup``. Unlike ``numpyro.infer.MCMC.run``, nothing recompiles between calls:
the kernel is traced once inside the caller's jitted scan. ``Info.num_grads`` counts the
leapfrog steps of the trajectory (one gradient each).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lesample import tree
from lesample.checks import check_fraction, check_int, check_positive
from lesample.samplers.base import SamplingAlgorithm

__all__ = ["HMCState", "HMCInfo", "numpyro_hmc"]


class HMCState(NamedTuple):
    """State of one HMC or NUTS chain.

    position
        The current sample ``y``, a pytree like the starting position (NumPyro's ``z``).
    inner
        NumPyro's ``numpyro.infer.hmc.HMCState``: potential energy ``beta H`` and its
        gradient, the warm-up (step size, mass matrix) adaptation state, the step count.
    """

    position: Any
    inner: Any


class HMCInfo(NamedTuple):
    """Information about one HMC or NUTS transition.

    acceptance_rate
        Float scalar in [0, 1]: the Metropolis acceptance probability (NUTS: averaged over
        the tree).
    diverged
        Boolean scalar: the new state (position or potential energy) is non-finite.
    divergent_transition
        Boolean scalar: NumPyro's energy-error divergence (the trajectory was rejected; the
        chain goes on: not fatal).
    num_grads
        int32 scalar: leapfrog steps of the trajectory (one gradient each).
    step_size
        Float scalar: the step size used (adapted during warm-up).
    """

    acceptance_rate: jax.Array
    diverged: jax.Array
    divergent_transition: jax.Array
    num_grads: jax.Array
    step_size: jax.Array


def _raw(key):
    """NumPyro keeps raw uint32 keys; accept new-style typed keys too."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def numpyro_hmc(
    H,
    beta,
    *,
    algo: str = "NUTS",
    num_warmup: int = 500,
    step_size: float = 0.1,
    num_leapfrog: int | None = None,
    trajectory_length: float | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
) -> SamplingAlgorithm:
    """HMC or NUTS on ``rho ∝ exp(-beta H)``.

    HMC's trajectory is ``num_leapfrog`` steps, or ``trajectory_length`` in time units (the
    step count then follows the adapted step size; NumPyro's default is ``2 pi``). Prefer a
    trajectory length: with a fixed step count NumPyro's dual averaging can drive the step
    size to underflow from a start far in the tails, and the chain never moves (flagged as
    stuck by ``sample``).
    """
    from numpyro.infer.hmc import hmc

    if algo not in ("HMC", "NUTS"):
        raise ValueError(f"`algo` must be 'HMC' or 'NUTS'; got {algo!r}.")
    num_warmup = check_int("num_warmup", num_warmup, low=0)
    step_size = check_positive("step_size", step_size)
    beta = check_positive("beta", beta)
    check_fraction("target_accept_prob", target_accept_prob)
    init_kernel, sample_kernel = hmc(potential_fn=lambda y: beta * H(y), algo=algo)
    if num_leapfrog is not None and trajectory_length is not None:
        raise ValueError("give at most one of `num_leapfrog` and `trajectory_length`.")
    extra = {}
    if algo == "HMC" and num_leapfrog is not None:
        extra["num_steps"] = check_int("num_leapfrog", num_leapfrog)
    if algo == "HMC" and trajectory_length is not None:
        extra["trajectory_length"] = check_positive("trajectory_length", trajectory_length)

    def init(position, key=None) -> HMCState:
        key = jax.random.key(0) if key is None else key
        inner = init_kernel(
            position,
            num_warmup,
            step_size=step_size,
            adapt_step_size=num_warmup > 0,
            adapt_mass_matrix=num_warmup > 0,
            dense_mass=dense_mass,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            rng_key=_raw(key),
            **extra,
        )
        return HMCState(inner.z, inner)

    def step(key, state: HMCState):
        inner = sample_kernel(state.inner._replace(rng_key=_raw(key)))
        diverged = ~(tree.all_finite(inner.z) & jnp.isfinite(inner.potential_energy))
        info = HMCInfo(
            inner.accept_prob,
            diverged,
            inner.diverging,
            jnp.asarray(inner.num_steps, jnp.int32),
            inner.adapt_state.step_size,
        )
        return HMCState(inner.z, inner), info

    return SamplingAlgorithm(init, step, algo.lower(), False, init_grads=1)
