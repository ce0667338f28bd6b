"""The inner target of local entropy, rho(y; x), over any pytree of parameters.

Conventions (docs/conventions.md): ``gamma`` is the scope, ``beta`` the inverse temperature, and

    H(x, y) = f(y) + |x - y|^2 / (2 gamma),        rho(y; x) ∝ exp(-beta H(x, y)),

so ``grad f_gamma(x) = (x - E_rho[y]) / gamma``. The ``rho2`` form changes variables to
``z = x - y``: ``rho2(z; x) ∝ exp(-beta f(x - z) - beta |z|^2 / (2 gamma))`` and
``grad f_gamma(x) = E_rho2[grad f(x - z)]``.

A loss is ``f(params)`` or, for mini-batches, ``f(params, batch)``; ``params`` is any JAX
pytree (a flat vector, a dict, a flax NNX ``State``). Every function below takes the same
``batch`` argument last and forwards it when the loss is batched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lesample import tree
from lesample.checks import check_finite, check_positive, check_scope

__all__ = [
    "LocalEntropyTarget",
    "local_entropy_target",
    "rho2_target",
]

PyTree = Any


class LocalEntropyTarget(NamedTuple):
    """``H``, ``grad_y H`` and ``log rho`` (up to a constant) for a fixed anchor ``x``.

    Each function is ``fn(y, batch=None)``; ``y`` has the pytree structure of ``x``.
    ``beta`` may be ``inf`` (the noise-free HJ limit); ``logdensity`` is then undefined.
    """

    H: Callable[..., jax.Array]
    grad_H: Callable[..., PyTree]
    value_and_grad_H: Callable[..., tuple[jax.Array, PyTree]]
    logdensity: Callable[..., jax.Array]
    x: PyTree
    gamma: jax.Array
    beta: jax.Array


def _call(loss_fn, params, batch):
    return loss_fn(params) if batch is None else loss_fn(params, batch)


def local_entropy_target(
    loss_fn: Callable[..., jax.Array],
    x: PyTree,
    gamma=None,
    beta=1.0,
    *,
    coupling=None,
) -> LocalEntropyTarget:
    """Build ``rho(y; x) ∝ exp(-beta [f(y) + |x - y|^2 / (2 gamma)])`` (docs/conventions.md).

    Args:
      loss_fn: ``f(params)`` or ``f(params, batch)`` returning a scalar.
      x: the anchor, a pytree of arrays.
      gamma: the scope (> 0); or give ``coupling = 1/gamma`` instead.
      beta: inverse temperature (> 0, ``inf`` allowed for the HJ limit).
    """
    gamma = check_scope(gamma, coupling)
    beta = check_positive("beta", beta, allow_inf=True)
    check_finite("x", x)

    def H(y, batch=None):
        return _call(loss_fn, y, batch) + tree.sq_norm(tree.sub(x, y)) / (2.0 * gamma)

    def value_and_grad_H(y, batch=None):
        value, g = jax.value_and_grad(lambda p: _call(loss_fn, p, batch))(y)
        diff = tree.sub(y, x)
        return value + tree.sq_norm(diff) / (2.0 * gamma), tree.axpy(1.0 / gamma, diff, g)

    def grad_H(y, batch=None):
        return value_and_grad_H(y, batch)[1]

    def logdensity(y, batch=None):
        return -beta * H(y, batch)

    return LocalEntropyTarget(H, grad_H, value_and_grad_H, logdensity, x, gamma, beta)


def rho2_target(
    loss_fn: Callable[..., jax.Array],
    x: PyTree,
    gamma=None,
    beta=1.0,
    *,
    coupling=None,
) -> LocalEntropyTarget:
    """The ``rho2`` form: a target over ``z = x - y`` with ``H2(z) = f(x - z) + |z|^2/(2 gamma)``.

    The returned ``x`` field is the anchor; draws ``z`` map back by ``y = x - z``, and
    ``grad f_gamma(x) = E_rho2[grad f(x - z)]`` (docs/conventions.md).
    """
    check_finite("x", x)
    shifted = lambda z, *batch: loss_fn(tree.sub(x, z), *batch)  # noqa: E731
    zero = jax.tree_util.tree_map(jnp.zeros_like, x)
    target = local_entropy_target(shifted, zero, gamma, beta, coupling=coupling)
    return target._replace(x=x)
