"""Estimators of ``E_rho[y]`` from one trajectory, streamed inside the sampler's scan.

An estimator is any object that follows the ``Estimator`` protocol: pure
``init(position) -> acc``, ``update(acc, position) -> acc`` and ``result(acc) -> estimate``,
and hashable (it is a static argument of jitted functions: a frozen dataclass is both), see
docs/samplers.md. Built in:

- ``TimeAverage``: the uniform average of the iterates (eq. 19);
- ``ExponentialAverage(alpha)``: ``mu <- alpha mu + (1 - alpha) y``, started at the initial
  position (Entropy-SGD uses ``alpha = 0.75`` and starts at ``x``);
- ``LastIterate``: the final ``y`` (HJ dynamics).

The average over chains (Elastic-SGD's replicas, eq. 22) is ``chain_mean``; it drops
diverged chains rather than averaging non-finite values in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from lesample import tree

PyTree = Any

__all__ = [
    "Estimator",
    "TimeAverage",
    "ExponentialAverage",
    "LastIterate",
    "ESTIMATORS",
    "get_estimator",
    "chain_mean",
    "estimate_path",
]


@runtime_checkable
class Estimator(Protocol):
    """A streaming estimator of ``E_rho[y]`` from one chain's states (pure functions).

    ``init(position) -> acc`` starts the accumulator at the chain's first kept state,
    ``update(acc, position) -> acc`` adds a state, ``result(acc) -> estimate`` gives the
    estimate (a pytree like ``position``). ``acc`` is any pytree of arrays. Implementations
    must be hashable (a frozen dataclass), as they are static arguments of ``jax.jit``.
    """

    def init(self, position: PyTree) -> PyTree: ...

    def update(self, acc: PyTree, position: PyTree) -> PyTree: ...

    def result(self, acc: PyTree) -> PyTree: ...


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


def get_estimator(spec) -> Estimator:
    """An estimator from a name (``"uniform"``, ``"exponential"``, ``"last"``) or any object
    following the ``Estimator`` protocol (returned as is)."""
    if isinstance(spec, str):
        if spec in ESTIMATORS:
            return ESTIMATORS[spec]()
    elif isinstance(spec, Estimator) and not isinstance(spec, type):
        try:
            hash(spec)
        except TypeError:
            raise TypeError(f"`estimator` must be hashable (e.g. a frozen dataclass): it is a "
                            f"static argument of jitted functions; got {spec!r}.") from None
        return spec
    raise ValueError(
        f"`estimator` must be one of {sorted(ESTIMATORS)} or an object with init/update/result "
        f"methods (the `lesample.estimators.Estimator` protocol); got {spec!r}."
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
