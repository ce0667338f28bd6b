"""Estimators of ``E_rho[y]`` from one trajectory, streamed inside the sampler's scan.

Each estimator is a frozen (hashable) dataclass with pure ``init(position) -> acc``,
``update(acc, position) -> acc`` and ``result(acc) -> estimate`` (docs/samplers.md):

- ``TimeAverage``: the uniform average of the iterates (eq. 19);
- ``ExponentialAverage(alpha)``: ``mu <- alpha mu + (1 - alpha) y``, started at the initial
  position (Entropy-SGD uses ``alpha = 0.75`` and starts at ``x``);
- ``LastIterate``: the final ``y`` (HJ dynamics).

The average over chains (Elastic-SGD's replicas, eq. 22) is ``chain_mean``; it drops
diverged chains rather than averaging non-finite values in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from lesample import tree

PyTree = Any

__all__ = [
    "TimeAverage",
    "ExponentialAverage",
    "LastIterate",
    "ESTIMATORS",
    "get_estimator",
    "chain_mean",
    "estimate_path",
]


@dataclass(frozen=True)
class TimeAverage:
    """Uniform average ``(1/n) sum_k y_k`` over the steps after burn-in (eq. 19)."""

    def init(self, position):
        return tree.zeros_like(position), jnp.zeros((), jnp.float32)

    def update(self, acc, position):
        mean, n = acc
        n = n + 1
        return jax.tree_util.tree_map(lambda m, y: m + (y - m) / n, mean, position), n

    def result(self, acc):
        return acc[0]


@dataclass(frozen=True)
class ExponentialAverage:
    """``mu <- alpha mu + (1 - alpha) y``, ``mu_0`` = the initial position (Entropy-SGD)."""

    alpha: float = 0.75

    def __post_init__(self):
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"`alpha` must be in [0, 1); got {self.alpha!r}.")

    def init(self, position):
        return position

    def update(self, acc, position):
        a = self.alpha
        return jax.tree_util.tree_map(lambda m, y: a * m + (1.0 - a) * y, acc, position)

    def result(self, acc):
        return acc


@dataclass(frozen=True)
class LastIterate:
    """The last iterate ``y_L`` (HJ dynamics, Lemma 3)."""

    def init(self, position):
        return position

    def update(self, acc, position):
        del acc
        return position

    def result(self, acc):
        return acc


ESTIMATORS = {"uniform": TimeAverage, "exponential": ExponentialAverage, "last": LastIterate}


def get_estimator(spec):
    """An estimator from a name (``"uniform"``, ``"exponential"``, ``"last"``) or an instance."""
    if isinstance(spec, TimeAverage | ExponentialAverage | LastIterate):
        return spec
    if isinstance(spec, str) and spec in ESTIMATORS:
        return ESTIMATORS[spec]()
    raise ValueError(
        f"`estimator` must be one of {sorted(ESTIMATORS)} or an estimator instance; got {spec!r}."
    )


def chain_mean(estimates: PyTree, diverged: jax.Array) -> PyTree:
    """Mean over the leading chain axis of the chains that did not diverge.

    ``estimates`` leaves are (chains, ...); ``diverged`` is (chains,) bool. If every chain
    diverged the result is NaN, which callers report (never a silent average).
    """
    keep = (~diverged).astype(jnp.float32)
    count = keep.sum()

    def mean(leaf):
        w = keep.reshape((-1,) + (1,) * (leaf.ndim - 1)).astype(leaf.dtype)
        total = jnp.where(w > 0, leaf, 0).sum(axis=0)
        return jnp.where(count > 0, total / jnp.maximum(count, 1).astype(leaf.dtype), jnp.nan)

    return jax.tree_util.tree_map(mean, estimates)


def estimate_path(estimator, start: jax.Array, draws: jax.Array) -> jax.Array:
    """The estimate after each step of a recorded trajectory, for post-hoc budget studies.

    ``start`` (d,) is the initial position, ``draws`` (chains, steps, d) the iterates
    ``y_1..y_L``; returns (chains, steps, d) with entry ``[:, l]`` the estimate from
    ``y_1..y_{l+1}`` (the same numbers the streaming estimator gives after ``l + 1`` steps).
    """
    est = get_estimator(estimator)

    def one(chain):
        def body(acc, y):
            acc = est.update(acc, y)
            return acc, est.result(acc)

        return jax.lax.scan(body, est.init(start), chain)[1]

    return jax.vmap(one)(draws)
