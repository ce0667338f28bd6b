"""Standardised noise for Langevin steps, drawn leaf by leaf over a pytree.

Two kinds, both with mean 0 and identity covariance:

- ``"gaussian"``: exact ``N(0, I)`` draws (``jax.random.normal``).
- ``"rademacher"``: i.i.d. signs ``±1``, unpacked 32 to a random 32-bit word. Its first three
  moments equal the Gaussian's (0, 1, 0), which is what a weak-order-1 scheme such as
  Euler–Maruyama needs; its fourth is 1 instead of 3. On a Gaussian target the Langevin
  recursions are linear, so their stationary mean and covariance depend on the noise only
  through its covariance and are the same as with Gaussian noise (tests check ULA's biased
  covariance and BAOAB's exact one with it). Its words come from
  ``lesample.threefry.random_words``. On the CPU it costs about 1/40 of an exact draw
  (mnistfc's 1.87M weights: 0.13 ms against 5.2 ms, each over the cost of the update that
  adds it; LeNet's 0.06 ms against 0.52 ms; measured); an exact draw costs about half an
  mnistfc gradient.

The Gaussian draws are ``jax.random.normal``'s numbers, bit for bit, from a threefry key
rewrapped as ``lesample.threefry.UNROLLED_THREEFRY`` (1.7x faster on the CPU: 9.2 ms).

Metropolis-adjusted kernels (MALA) need the Gaussian proposal density and accept only
``"gaussian"``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lesample.threefry import random_words, unrolled

PyTree = Any

NOISE_KINDS = ("gaussian", "rademacher")

__all__ = ["NOISE_KINDS", "check_noise", "normal_like"]


def check_noise(noise: str) -> str:
    if noise not in NOISE_KINDS:
        raise ValueError(f"`noise` must be one of {NOISE_KINDS}; got {noise!r}.")
    return noise


def _rademacher(key: jax.Array, shape, dtype) -> jax.Array:
    size = 1
    for s in shape:
        size *= s
    words = random_words(key, -(-size // 32))
    signs = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & jnp.uint32(1)
    flat = signs.reshape(-1)[:size].astype(dtype)
    return (2 * flat - 1).reshape(shape)


def normal_like(key: jax.Array, params: PyTree, noise: str = "gaussian") -> PyTree:
    """Standardised noise with the structure, shapes and float dtypes of ``params``."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    if noise == "gaussian":  # jax.random.normal's numbers, bit for bit, ~1.7x faster on CPU
        keys = [unrolled(k) for k in keys]
        draw = jax.random.normal
    else:
        draw = _rademacher
    out = [
        draw(k, jnp.shape(u), jnp.result_type(u, jnp.float32))
        for k, u in zip(keys, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)
