"""Random 32-bit words from JAX's Threefry-2x32, lowered as straight-line code.

``random_words(key, n)``: word ``2i + j`` is output ``j`` of Threefry on the counters
``(i, i + h)``, ``h = 2 ceil(n / 4)``; that is ``jax.extend.random.threefry_2x32(key_data,
iota(2h))`` (all outputs 0, then all outputs 1) interleaved, bit for bit: the same
Threefry-2x32 with 20 rounds (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2,
3"), the same key schedule and counters. Only the lowering differs, and only for speed:

- On the CPU, JAX lowers Threefry as a rolled 5-iteration loop whose rotation amounts are loop
  values; unrolled with constant rotations, XLA fuses the 20 rounds into one vector loop.
- ``jax.random.bits`` (with the default ``jax_threefry_partitionable``) spends one Threefry
  call, two 32-bit outputs, on each 32-bit word it returns; here each call gives two words.

Together that is 2.3x fewer CPU cycles per word than ``jax.random.bits`` (docs/results.md).
Dropout masks and Rademacher noise draw their bits here.
Keys of other PRNG implementations fall back to ``jax.random.bits``.

``UNROLLED_THREEFRY`` is JAX's threefry2x32 PRNG with the unrolled rounds for its 32-bit
words; ``unrolled(key)`` rewraps a threefry key as one. Every ``jax.random`` sampler then
gives the same numbers, bit for bit (tested), about 1.7x faster on the CPU (``lesample.noise``'s
Gaussian draws).
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np

__all__ = ["UNROLLED_THREEFRY", "random_words", "threefry2x32", "unrolled"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
_STORE_FROM = 64  # calls from which stored words pay for their loop (see random_words)
_STOCK = jax.extend.random.threefry_prng_impl


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k1, k2, x0, x1) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32-20 of the counter pairs ``(x0, x1)`` under the key ``(k1, k2)`` (all
    ``uint32``, broadcast together): the hash of ``jax.extend.random.threefry_2x32``."""
    for name, v in (("k1", k1), ("k2", k2), ("x0", x0), ("x1", x1)):
        if jnp.asarray(v).dtype != jnp.uint32:  # signed shifts would give another hash
            raise TypeError(f"threefry2x32: `{name}` must be uint32; got {jnp.asarray(v).dtype}.")
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _threefry_data(key: jax.Array) -> jax.Array | None:
    """The ``uint32[2]`` data of one threefry key (typed, or raw under JAX's default threefry
    implementation); None for anything else, which ``jax.random`` then takes or rejects."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        threefry = key.shape == () and "threefry" in str(jax.random.key_impl(key))
    else:
        threefry = (key.shape == (2,) and key.dtype == jnp.uint32
                    and jax.config.jax_default_prng_impl == "threefry2x32")
    return jax.random.key_data(key) if threefry else None


def random_words(key: jax.Array, n: int, *, store: bool = True) -> jax.Array:
    """``n`` independent uniform ``uint32`` words (shape ``(n,)``) from one PRNG ``key``.

    ``store=False`` lets XLA fuse the rounds into the consumer, which then recomputes them
    per read: as cheap as storing the words when each is read about twice (dropout masks:
    20 mnistfc gradients within 1% either way, ``benchmarks/entropy_step.py``), much dearer
    when read 32 times (Rademacher signs).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"`n` must be an int (a static word count); got {n!r}.")
    if not 0 <= n <= 2**32:
        raise ValueError(f"`n` must be in [0, 2^32] (the counter space); got {n}.")
    data = _threefry_data(key)
    if data is None:
        return jax.random.bits(key, (n,), jnp.uint32)
    k1, k2 = data
    c = -(-n // 4)
    h = 2 * c  # Threefry calls, even; call i hashes the counters (i, i + h)
    if not store or h < _STORE_FROM:
        count = jnp.arange(h, dtype=jnp.uint32)
        return jnp.stack(threefry2x32(k1, k2, count, count + np.uint32(h)), 1).reshape(-1)[:n]
    # A consumer that reads each word several times (2 dropout masks, 32 signs) would have
    # XLA fuse the 20 rounds into it and redo them per read (32 signs: 8x slower). A loop's
    # outputs are stored, never fused, so the calls run as a 2-iteration loop (XLA inlines a
    # 1-iteration loop; it also drops `lax.optimization_barrier` on the CPU) that writes
    # them in place into one buffer: a consumer then reads a plain array, which XLA
    # vectorises (read through a concatenation, an erf_inv runs ~5x slower). XLA:CPU has no
    # multi-output fusion, so storing the two outputs of a call as two arrays would run the
    # rounds twice; stored as the two halves of one complex64 element (bit moves only, NaN
    # patterns included: tested) they run once, 1.6x fewer cycles per word (docs/results.md).

    def half(j, pairs):
        start = (j * c).astype(jnp.uint32)
        count = start + jnp.arange(c, dtype=jnp.uint32)
        first, second = threefry2x32(k1, k2, count, count + np.uint32(h))
        pair = jax.lax.complex(*(jax.lax.bitcast_convert_type(w, jnp.float32)
                                 for w in (first, second)))
        return jax.lax.dynamic_update_slice(pairs, pair, (start,))

    pairs = jax.lax.fori_loop(0, 2, half, jnp.zeros(h, jnp.complex64))
    halves = [jax.lax.bitcast_convert_type(part(pairs), jnp.uint32)
              for part in (jnp.real, jnp.imag)]
    return jnp.stack(halves, 1).reshape(-1)[:n]


def _partitionable_bits(key_data: jax.Array, bit_width: int, shape) -> jax.Array:
    """``threefry_prng_impl.random_bits``, with 32-bit words from the unrolled rounds: under
    ``jax_threefry_partitionable`` (the default) word ``i`` of the flattened shape is the XOR
    of the two outputs of Threefry on the counters ``(0, i)`` for fewer than 2^32 words."""
    size = math.prod(shape)
    if bit_width != 32 or size >= 2**32 or not jax.config.jax_threefry_partitionable:
        return _STOCK.random_bits(key_data, bit_width, shape)
    count = jax.lax.iota(jnp.uint32, size).reshape(shape)
    first, second = threefry2x32(key_data[0], key_data[1], np.uint32(0), count)
    return first ^ second


#: JAX's threefry2x32 PRNG with the unrolled rounds for 32-bit words: the same keys, splits
#: and numbers (``jax.random.normal`` and friends give the same values, bit for bit).
UNROLLED_THREEFRY = jax.extend.random.define_prng_impl(
    key_shape=_STOCK.key_shape, seed=_STOCK.seed, split=_STOCK.split,
    random_bits=_partitionable_bits, fold_in=_STOCK.fold_in, name="threefry2x32_unrolled")


def unrolled(key: jax.Array) -> jax.Array:
    """``key`` (a threefry key, typed or raw) as a typed key of ``UNROLLED_THREEFRY``: the
    same stream, drawn ~1.7x faster on the CPU; anything else is returned unchanged, for
    ``jax.random`` to take or reject."""
    data = _threefry_data(key)
    return key if data is None else jax.random.wrap_key_data(data, impl=UNROLLED_THREEFRY)
