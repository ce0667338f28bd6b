"""Small pytree arithmetic used by the targets, kernels and estimators."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any

__all__ = ["add", "sub", "scale", "axpy", "sq_norm", "vdot", "all_finite", "zeros_like"]


def add(a: PyTree, b: PyTree) -> PyTree:
    return jax.tree_util.tree_map(jnp.add, a, b)


def sub(a: PyTree, b: PyTree) -> PyTree:
    return jax.tree_util.tree_map(jnp.subtract, a, b)


def scale(s, a: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda u: s * u, a)


def axpy(s, a: PyTree, b: PyTree) -> PyTree:
    """``s * a + b``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda u, v: s * u + v, a, b)


def vdot(a: PyTree, b: PyTree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda u, v: jnp.vdot(u, v), a, b))
    return sum(leaves, jnp.zeros(()))


def sq_norm(a: PyTree) -> jax.Array:
    return vdot(a, a)


def all_finite(a: PyTree) -> jax.Array:
    """A boolean scalar: every entry of every leaf is finite.

    Tested as ``isfinite(max |u|)`` per leaf (a NaN or inf entry makes the max non-finite):
    one float reduction, which XLA:CPU runs about twice as fast as ``all(isfinite(u))``.
    """
    leaves = [jnp.isfinite(jnp.max(jnp.abs(u))) for u in jax.tree_util.tree_leaves(a)
              if jnp.size(u)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def zeros_like(a: PyTree) -> PyTree:
    return jax.tree_util.tree_map(jnp.zeros_like, a)
