"""Standardised noise for Langevin steps, drawn leaf by leaf over a pytree.

Two kinds, both with mean 0 and identity covariance:

- ``"gaussian"``: exact ``N(0, I)`` draws (``jax.random.normal``).
- ``"rademacher"``: i.i.d. signs ``±1``, unpacked 32 to a random 32-bit word. Its first three
  moments equal the Gaussian's (0, 1, 0), which is what a weak-order-1 scheme such as
  Euler–Maruyama needs; its fourth is 1 instead of 3. On a Gaussian target the Langevin
  recursions are linear, so their stationary mean and covariance depend on the noise only
  through its covariance and are the same as with Gaussian noise (tests check ULA's biased
  covariance and BAOAB's exact one with it). Its words come from
  ``lesample.threefry.random_words``. On the CPU a draw of signs costs a small fraction of
  an exact Gaussian draw, which costs about half an mnistfc gradient
  (``benchmarks/kernels.py`` measures both in a Langevin step).

The Gaussian draws are ``jax.random.normal``'s numbers, bit for bit, from a threefry key
rewrapped as ``lesample.threefry.UNROLLED_THREEFRY`` (faster on the CPU).

``noise_like(key, params, noise)`` draws either kind; ``gaussian_like`` and ``signs_like``
name one. (``normal_like``, which returned signs for ``"rademacher"``, is deprecated.)

Metropolis-adjusted kernels (MALA) need the Gaussian proposal density and accept only
``"gaussian"``.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from lesample.checks import check_choice
from lesample.threefry import random_words, unrolled

PyTree = Any

NOISE_KINDS = ("gaussian", "rademacher")

__all__ = ["NOISE_KINDS", "check_noise", "noise_like", "signs_like", "gaussian_like"]


def check_noise(noise: str) -> str:
    """``noise`` if it is one of ``NOISE_KINDS``, else a ``ValueError`` listing them."""
    return check_choice("noise", noise, NOISE_KINDS)


def _signs(key: jax.Array, shape, dtype) -> jax.Array:
    size = 1
    for s in shape:
        size *= s
    words = random_words(key, -(-size // 32))
    signs = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & jnp.uint32(1)
    flat = signs.reshape(-1)[:size].astype(dtype)
    return (2 * flat - 1).reshape(shape)


def _normal(key: jax.Array, shape, dtype) -> jax.Array:
    # jax.random.normal's numbers, bit for bit, ~1.7x faster on the CPU (module docstring).
    return jax.random.normal(unrolled(key), shape, dtype)


def noise_like(key: jax.Array, params: PyTree, noise: str = "gaussian") -> PyTree:
    """Standardised noise (mean 0, identity covariance) with the structure, shapes and float
    dtypes of ``params``: ``noise="gaussian"`` draws ``N(0, I)``, ``"rademacher"`` draws
    i.i.d. signs ``±1`` (see the module docstring). Each leaf gets its own key, split from
    ``key``."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    draw = _normal if noise == "gaussian" else _signs
    out = [
        draw(k, jnp.shape(u), jnp.result_type(u, jnp.float32))
        for k, u in zip(keys, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


def gaussian_like(key: jax.Array, params: PyTree) -> PyTree:
    """``N(0, I)`` draws shaped like ``params``: ``noise_like(key, params, "gaussian")``."""
    return noise_like(key, params, "gaussian")


def signs_like(key: jax.Array, params: PyTree) -> PyTree:
    """Random signs ``±1`` shaped like ``params``: ``noise_like(key, params, "rademacher")``."""
    return noise_like(key, params, "rademacher")


def __getattr__(name):
    if name == "normal_like":  # deprecated alias: it returned signs for "rademacher"
        warnings.warn("`lesample.noise.normal_like` is deprecated (with noise='rademacher' it "
                      "returns signs, not normal draws); use `noise_like`, `gaussian_like` or "
                      "`signs_like`.", DeprecationWarning, stacklevel=2)
        return noise_like
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
