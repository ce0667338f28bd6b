"""Hamilton–Jacobi (noise-free) inner dynamics: gradient descent on ``H`` (paper §7.2).

    y <- y - h grad_y H(y)

This is ULA at ``beta = inf``. Its fixed point is ``argmin_y H(x, y)``, the proximal point
of ``f`` at ``x`` whose limit gives the non-viscous HJ gradient ``(x - y*) / gamma``
(Lemma 3); for a quadratic ``f`` it equals ``E_rho[y]``. Use the last-iterate estimator
(docs/samplers.md). Its state and info are ULA's (``HJState``, ``HJInfo``: the position;
``diverged``, ``num_grads``).
"""

from __future__ import annotations

import jax.numpy as jnp

from lesample import tree
from lesample.checks import check_positive
from lesample.samplers.base import SamplingAlgorithm, check_gradient
from lesample.samplers.overdamped import ULAInfo as HJInfo
from lesample.samplers.overdamped import ULAState as HJState
from lesample.samplers.overdamped import init

__all__ = ["HJState", "HJInfo", "init", "build_kernel", "hj"]


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
