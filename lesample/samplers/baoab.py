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
from lesample.noise import check_noise, normal_like
from lesample.samplers.base import SamplingAlgorithm, check_step_size
from lesample.target import check_positive

__all__ = ["BAOABState", "BAOABInfo", "build_init", "build_kernel", "baoab"]


class BAOABState(NamedTuple):
    position: Any
    momentum: Any
    grad: Any


class BAOABInfo(NamedTuple):
    diverged: jax.Array
    num_grads: jax.Array


def build_init(grad_H, beta, noise: str = "gaussian"):
    """Momentum starts at its stationary law ``N(0, I/beta)`` (zero when ``beta = inf``)."""

    def init(position, key=None, batch=None) -> BAOABState:
        key = jax.random.key(0) if key is None else key
        v = tree.scale(1.0 / jnp.sqrt(beta), normal_like(key, position, noise))
        return BAOABState(position, v, grad_H(position, batch))

    return init


def build_kernel(grad_H, step_size, beta, friction, noise: str = "gaussian"):
    decay = jnp.exp(-friction * step_size)
    kick = jnp.sqrt((1.0 - decay**2) / beta)
    half = 0.5 * step_size

    def kernel(key, state: BAOABState, batch=None):
        v = tree.axpy(-half, state.grad, state.momentum)
        y = tree.axpy(half, v, state.position)
        v = tree.axpy(kick, normal_like(key, v, noise), tree.scale(decay, v))
        y = tree.axpy(half, v, y)
        g = grad_H(y, batch)
        v = tree.axpy(-half, g, v)
        diverged = ~(tree.all_finite(y) & tree.all_finite(v))
        return BAOABState(y, v, g), BAOABInfo(diverged, jnp.ones((), jnp.int32))

    return kernel


def baoab(grad_H, step_size, beta, *, friction=1.0, noise: str = "gaussian") -> SamplingAlgorithm:
    """BAOAB on ``rho ∝ exp(-beta H)`` with friction ``friction`` (> 0)."""
    check_step_size(step_size)
    check_positive("friction", friction)
    check_noise(noise)
    return SamplingAlgorithm(
        build_init(grad_H, beta, noise),
        build_kernel(grad_H, step_size, beta, friction, noise),
        "baoab",
        True,
    )
