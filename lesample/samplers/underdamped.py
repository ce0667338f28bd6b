"""Underdamped Langevin by BAOAB splitting (Leimkuhler & Matthews), friction ``friction``.

Dynamics ``dy = v dt``, ``dv = -grad_y H dt - c v dt + sqrt(2c/beta) dW`` (unit mass), with
invariant law ``exp(-beta [H(y) + |v|^2/2])``. One step of size ``h``:

    B: v -= h/2 grad H(y);  A: y += h/2 v;  O: v = e^{-ch} v + sqrt((1 - e^{-2ch})/beta) xi;
    A: y += h/2 v;          B: v -= h/2 grad H(y)

One gradient per step (cached in the state). On a Gaussian target BAOAB samples the position
law exactly at any stable step (``h < 2 / sqrt(lambda_max(A))``); its bias on smooth
non-Gaussian targets is ``O(h^2)``. With a mini-batch gradient the cached gradient comes
from the previous batch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lesample import tree
from lesample.checks import check_choice, check_positive
from lesample.noise import NOISE_KINDS, noise_like
from lesample.samplers.base import SamplingAlgorithm, check_gradient

__all__ = ["BAOABState", "BAOABInfo", "build_init", "build_kernel", "baoab"]


class BAOABState(NamedTuple):
    """State of one BAOAB chain.

    position
        The current sample ``y``, a pytree like the starting position.
    momentum
        The velocity ``v`` (unit mass), a pytree like ``position``; stationary law
        ``N(0, I / beta)``.
    grad
        ``grad_y H(position)`` (on the last mini-batch), a pytree like ``position``: cached
        so that each step costs one gradient.
    """

    position: Any
    momentum: Any
    grad: Any


class BAOABInfo(NamedTuple):
    """Information about one BAOAB transition.

    diverged
        Boolean scalar: the new position or momentum has a NaN or inf entry.
    num_grads
        int32 scalar: gradient evaluations spent by the step (always 1).
    """

    diverged: jax.Array
    num_grads: jax.Array


def build_init(grad_H, beta, noise: str = "gaussian"):
    """Momentum starts at its stationary law ``N(0, I/beta)`` (zero when ``beta = inf``)."""

    def init(position, key=None, batch=None) -> BAOABState:
        key = jax.random.key(0) if key is None else key
        v = tree.scale(1.0 / jnp.sqrt(beta), noise_like(key, position, noise))
        g = grad_H(position, batch)
        check_gradient(g, position)
        return BAOABState(position, v, g)

    return init


def build_kernel(grad_H, step_size, beta, friction, noise: str = "gaussian"):
    decay = jnp.exp(-friction * step_size)
    kick = jnp.sqrt((1.0 - decay**2) / beta)
    half = 0.5 * step_size

    def kernel(key, state: BAOABState, batch=None):
        v = tree.axpy(-half, state.grad, state.momentum)
        y = tree.axpy(half, v, state.position)
        v = tree.axpy(kick, noise_like(key, v, noise), tree.scale(decay, v))
        y = tree.axpy(half, v, y)
        g = grad_H(y, batch)
        v = tree.axpy(-half, g, v)
        diverged = ~(tree.all_finite(y) & tree.all_finite(v))
        return BAOABState(y, v, g), BAOABInfo(diverged, jnp.ones((), jnp.int32))

    return kernel


def baoab(grad_H, step_size, beta, *, friction=1.0, noise: str = "gaussian") -> SamplingAlgorithm:
    """BAOAB on ``rho ∝ exp(-beta H)``.

    Args:
      grad_H: ``grad_H(y, batch=None)``, the gradient of ``H`` at ``y`` (a pytree like
        ``y``; not a ``(value, gradient)`` pair).
      step_size: ``h > 0``.
      beta: the inverse temperature, ``> 0``; ``inf`` gives noise-free dynamics.
      friction: ``c > 0``.
      noise: ``"gaussian"`` or ``"rademacher"`` (signs; ``lesample.noise``).
    """
    step_size = check_positive("step_size", step_size)
    beta = check_positive("beta", beta, allow_inf=True)
    friction = check_positive("friction", friction)
    check_choice("noise", noise, NOISE_KINDS)
    return SamplingAlgorithm(
        build_init(grad_H, beta, noise),
        build_kernel(grad_H, step_size, beta, friction, noise),
        "baoab",
        True,
        init_grads=1,
    )
