"""Overdamped Langevin: ULA, or SGLD when ``grad_H`` is a mini-batch estimate.

Euler–Maruyama for ``dy = -grad_y H dt + sqrt(2/beta) dW`` (docs/conventions.md):

    y <- y - h grad_y H(y) + sqrt(2 h / beta) xi.

(The paper's eq. (31) writes ``sqrt(h/beta)``, which targets ``exp(-2 beta H)``.) On a
Gaussian target with precision ``beta A`` the chain is stationary at
``N(m, (1/beta) A^{-1} (I - h A / 2)^{-1})``: biased by ``O(h)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lesample import tree
from lesample.checks import check_choice, check_positive
from lesample.noise import NOISE_KINDS, noise_like
from lesample.samplers.base import SamplingAlgorithm, check_gradient

__all__ = ["ULAState", "ULAInfo", "init", "build_kernel", "ula"]


class ULAState(NamedTuple):
    """State of one ULA (or HJ) chain.

    position
        The current sample ``y``, a pytree with the structure, shapes and dtypes of the
        starting position (for a flat target, an array of shape ``(d,)``).
    """

    position: Any


class ULAInfo(NamedTuple):
    """Information about one ULA (or HJ) transition.

    diverged
        Boolean scalar: the new position has a NaN or inf entry.
    num_grads
        int32 scalar: gradient evaluations spent by the step (always 1).
    """

    diverged: jax.Array
    num_grads: jax.Array


def init(position, key=None, batch=None) -> ULAState:
    del key, batch
    return ULAState(position)


def build_kernel(grad_H, step_size, beta, noise: str = "gaussian"):
    """``kernel(key, state, batch=None)``; ``beta = inf`` gives noise-free descent on ``H``."""
    noise_scale = jnp.sqrt(2.0 * step_size / beta)

    def kernel(key, state: ULAState, batch=None):
        y = state.position
        g = grad_H(y, batch)
        check_gradient(g, y)
        xi = noise_like(key, y, noise)
        new = jax.tree_util.tree_map(lambda u, d, z: u - step_size * d + noise_scale * z, y, g, xi)
        return ULAState(new), ULAInfo(~tree.all_finite(new), jnp.ones((), jnp.int32))

    return kernel


def ula(grad_H, step_size, beta, *, noise: str = "gaussian") -> SamplingAlgorithm:
    """ULA/SGLD on ``rho ∝ exp(-beta H)``.

    Args:
      grad_H: ``grad_H(y, batch=None)``, the gradient of ``H`` at ``y`` (a pytree like
        ``y``; not a ``(value, gradient)`` pair).
      step_size: ``h > 0``.
      beta: the inverse temperature, ``> 0``; ``inf`` gives noise-free descent (HJ).
      noise: ``"gaussian"`` or ``"rademacher"`` (signs; ``lesample.noise``).
    """
    step_size = check_positive("step_size", step_size)
    beta = check_positive("beta", beta, allow_inf=True)
    check_choice("noise", noise, NOISE_KINDS)
    return SamplingAlgorithm(init, build_kernel(grad_H, step_size, beta, noise), "ula", True,
                             position_only=True)
