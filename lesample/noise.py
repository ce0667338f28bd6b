"""Standardised noise for Langevin steps, shaped like a pytree.

Two kinds, both with mean 0 and identity covariance:

- ``"gaussian"``: exact ``N(0, I)`` draws (``jax.random.normal``).
- ``"rademacher"``: i.i.d. signs ``±1``, unpacked 32 to a random 32-bit word: one draw of
  ``sum_leaf ceil(size / 32)`` words from the key (``lesample.threefry.random_words``) serves
  the whole pytree, leaf after leaf, and sign ``k`` of a leaf (flattened) is ``+1`` or ``-1``
  as bit ``k mod 32`` of its word ``k // 32`` is 1 or 0. The bits are independent and fair,
  so the signs have mean 0 and identity covariance exactly (in law). Their first three
  moments equal the Gaussian's (0, 1, 0), which is what a weak-order-1 scheme such as
  Euler–Maruyama needs; their fourth is 1 instead of 3. On a Gaussian target the Langevin
  recursions are linear, so their stationary mean and covariance depend on the noise only
  through its covariance and are the same as with Gaussian noise (tests check ULA's biased
  covariance and BAOAB's exact one with it). On the CPU a draw of signs costs a small
  fraction of an exact Gaussian draw, which costs about half an mnistfc gradient
  (``benchmarks/kernels.py`` measures both in a Langevin step).

The Gaussian draws are ``jax.random.normal``'s numbers, bit for bit, from a threefry key
rewrapped as ``lesample.threefry.UNROLLED_THREEFRY`` (faster on the CPU).

``noise_like(key, params, noise)`` draws either kind; ``gaussian_like`` and ``signs_like``
name one. (``normal_like``, which returned signs for ``"rademacher"``, is deprecated.)

Metropolis-adjusted kernels (MALA) need the Gaussian proposal density and accept only
``"gaussian"``.
"""

from __future__ import annotations

import math
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


def _signs(key: jax.Array, leaves: list) -> list:
    # One draw of words for the whole pytree, leaf after leaf: one Threefry loop whatever the
    # number of leaves, and small leaves' words are stored with the rest instead of being
    # fused into their consumer, which would recompute each word for each of its 32 signs
    # (random_words fuses draws of fewer than _STORE_FROM calls).
    sizes = [math.prod(jnp.shape(u)) for u in leaves]
    counts = [-(-n // 32) for n in sizes]
    words = random_words(key, sum(counts))
    out, start = [], 0
    for u, n, c in zip(leaves, sizes, counts, strict=True):
        bits = (words[start:start + c, None] >> jnp.arange(32, dtype=jnp.uint32)) & jnp.uint32(1)
        start += c
        dtype = jnp.result_type(u, jnp.float32)
        out.append((2 * bits.reshape(-1)[:n].astype(dtype) - 1).reshape(jnp.shape(u)))
    return out


def _normal(key: jax.Array, shape, dtype) -> jax.Array:
    # jax.random.normal's numbers, bit for bit, ~1.7x faster on the CPU (module docstring).
    return jax.random.normal(unrolled(key), shape, dtype)


def noise_like(key: jax.Array, params: PyTree, noise: str = "gaussian") -> PyTree:
    """Standardised noise (mean 0, identity covariance) with the structure, shapes and float
    dtypes of ``params``: ``noise="gaussian"`` draws ``N(0, I)`` (each leaf with its own key,
    split from ``key``), ``"rademacher"`` draws i.i.d. signs ``±1`` (all leaves from the
    words of ``key``, leaf after leaf; see the module docstring)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if noise == "gaussian":
        keys = jax.random.split(key, len(leaves))
        out = [_normal(k, jnp.shape(u), jnp.result_type(u, jnp.float32))
               for k, u in zip(keys, leaves, strict=True)]
    else:
        out = _signs(key, leaves)
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
