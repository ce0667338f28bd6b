"""Layers of the deep-benchmark models (see :mod:`lesample.nets` for the modes): dropout
keyed by an explicit PRNG key, max-pooling in two forms, and convolutions as one matmul.

Max-pooling
-----------
``max_pool`` (``nnx.max_pool``, a ``lax.reduce_window``) and ``max_pool_reshape`` (reshape to
``(N, H/k, k, W/k, k, C)`` and take the max over the two window axes) agree exactly when the
window equals the stride and divides H and W, forward, and backward when a window has a
single maximum (with ties, ``reduce_window`` sends the gradient to one maximum and ``max`` splits
it among them). LeNet's pools satisfy the condition (24 -> 8, 4 -> 2), and it uses the reshape
form, which is faster on CPU in the backward pass (``benchmarks/maxpool.py``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from lesample.threefry import random_words

__all__ = ["CONVS", "POOLS", "Dropout", "conv_shifted_matmul", "max_pool", "max_pool_reshape"]


class Dropout(nnx.Module):
    """Inverted dropout with 16-bit masks: ``Dropout(rate)(x, key)``; ``key=None`` is the
    identity (evaluation mode).

    A unit is kept when a 16-bit random integer is below ``t = round((1 - rate) 2^16)``, and
    kept units are scaled by ``2^16 / t``, the exact inverse of the keep probability, so the
    layer is unbiased. The rate is ``rate`` to within 2^-17 (0.2 gives 0.199997; 0.25 and
    0.5 are exact). Each random 32-bit word (``lesample.threefry.random_words``: 2.3x cheaper
    per word than ``jax.random.bits`` on the CPU) makes two masks, so dropout costs a small
    fraction of an mnistfc gradient on the CPU.
    """

    def __init__(self, rate: float):
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"dropout `rate` must be a number in [0, 1); got {rate!r}.")
        self.rate = float(rate)
        self.threshold = round((1.0 - rate) * 2**16)
        if self.threshold < 1:  # the scale 2^16 / t needs t >= 1
            raise ValueError(f"dropout `rate` must be at most 1 - 2^-17 (16-bit masks); "
                             f"got {rate!r}.")

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        if key is None or self.rate == 0.0:
            return x
        n = x.size
        words = random_words(key, -(-n // 2), store=False)
        # Low halves mask the first half of the flattened x, high halves the second: on
        # XLA:CPU this fuses better than interleaving them (an mnistfc gradient ~6% faster).
        halves = jnp.concatenate([words & jnp.uint32(0xFFFF), words >> 16])
        keep = halves[:n].reshape(x.shape) < self.threshold
        return jnp.where(keep, x * (2**16 / self.threshold), 0).astype(x.dtype)


def max_pool(x: jax.Array, window: int) -> jax.Array:
    """Max-pool NHWC ``x`` over ``window x window`` patches with stride ``window`` (VALID):
    ``nnx.max_pool``, a ``lax.reduce_window``."""
    return nnx.max_pool(x, (window, window), strides=(window, window), padding="VALID")


def max_pool_reshape(x: jax.Array, window: int) -> jax.Array:
    """Same as ``max_pool`` when ``window`` divides H and W, as a reshape and a ``max``.

    Its backward pass is an elementwise comparison instead of ``select_and_scatter_add``.
    Where ``window`` does not divide H or W it falls back to ``max_pool`` (whose VALID
    padding drops the remainder)."""
    n, h, w, c = x.shape
    if h % window or w % window:
        return max_pool(x, window)
    return x.reshape(n, h // window, window, w // window, window, c).max(axis=(2, 4))


POOLS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "reshape": max_pool_reshape,
    "reduce_window": max_pool,
}


def conv_shifted_matmul(inputs, kernel, window_strides, padding, *, lhs_dilation=None,
                        rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                        **kwargs):
    """``lax.conv_general_dilated`` for NHWC inputs and HWIO kernels (any strides; padding
    "VALID", "SAME" or non-negative pairs; no dilation or groups) as one matmul over the
    ``kh * kw`` shifted, strided slices of the zero-padded input (im2col by slicing); any
    other case goes to ``lax.conv_general_dilated``. Same result up to rounding. On XLA:CPU,
    where XLA's convolution gradients run far slower inside a loop, it makes LeNet's and
    All-CNN's gradients much faster (``benchmarks/maxpool.py``, docs/results.md). A drop-in
    for ``nnx.Conv(conv_general_dilated=...)``."""
    plain = (kernel.ndim == 4 and inputs.ndim == 4
             and lhs_dilation in (None, (1, 1)) and rhs_dilation in (None, (1, 1))
             and feature_group_count == 1
             and dimension_numbers == jax.lax.conv_dimension_numbers(
                 inputs.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
             and kwargs.get("preferred_element_type") is None
             and kwargs.get("out_sharding") is None)
    if plain and isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(inputs.shape[1:3], kernel.shape[:2], window_strides,
                                          padding)
    if not plain or min(p for pair in padding for p in pair) < 0:
        return jax.lax.conv_general_dilated(
            inputs, kernel, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, **kwargs)
    kh, kw, cin, cout = kernel.shape
    (sh, sw), (ph, pw) = window_strides, padding
    x = jnp.pad(inputs, ((0, 0), tuple(ph), tuple(pw), (0, 0)))
    h, w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    cols = jnp.concatenate([x[:, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw, :]
                            for i in range(kh) for j in range(kw)], axis=-1)
    # cols: (N, h, w, kh * kw * cin)
    return jax.lax.dot_general(cols, kernel.reshape(kh * kw * cin, cout),
                               (((3,), (0,)), ((), ())), precision=kwargs.get("precision"))


#: Convolution implementations of LeNet and All-CNN (``nnx.Conv``'s ``conv_general_dilated``).
CONVS: dict[str, Callable] = {
    "matmul": conv_shifted_matmul,
    "xla": jax.lax.conv_general_dilated,
}
