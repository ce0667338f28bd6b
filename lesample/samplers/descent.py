"""Hamilton–Jacobi (noise-free) inner dynamics: gradient descent on ``H`` (paper §7.2).

    y <- y - h grad_y H(y)

This is ULA at ``beta = inf``. Its fixed point is ``argmin_y H(x, y)``, the proximal point
of ``f`` at ``x`` whose limit gives the non-viscous HJ gradient ``(x - y*) / gamma``
(Lemma 3); for a quadratic ``f`` it equals ``E_rho[y]``. Use the last-iterate estimator
(docs/samplers.md).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lesample import tree
from lesample.checks import check_positive
from lesample.samplers.base import SamplingAlgorithm, check_gradient
from lesample.samplers.overdamped import ULAState as HJState
from lesample.samplers.overdamped import init

__all__ = ["HJState", "HJInfo", "init", "build_kernel", "hj"]


class HJInfo(NamedTuple):
    """Information about one HJ transition (its state is ``HJState``, ULA's: the position).

    diverged
        Boolean scalar: the new position has a NaN or inf entry.
    num_grads
        int32 scalar: gradient evaluations spent by the step (always 1).
    """

    diverged: jax.Array
    num_grads: jax.Array


def build_kernel(grad_H, step_size):
    def kernel(key, state: HJState, batch=None):
        del key
        g = grad_H(state.position, batch)
        check_gradient(g, state.position)
        new = tree.axpy(-step_size, g, state.position)
        return HJState(new), HJInfo(~tree.all_finite(new), jnp.ones((), jnp.int32))

    return kernel


def hj(grad_H, step_size) -> SamplingAlgorithm:
    """Noise-free descent on ``H`` with step ``step_size > 0`` (stable below ``2/L_H``);
    ``grad_H(y, batch=None)`` returns the gradient, a pytree like ``y``."""
    step_size = check_positive("step_size", step_size)
    return SamplingAlgorithm(init, build_kernel(grad_H, step_size), "hj", True,
                             position_only=True)
