"""``lesample.threefry``: the unrolled Threefry-2x32 is JAX's, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from lesample.threefry import random_words, threefry2x32


@pytest.mark.parametrize("key, count, expected", [
    # Known-answer vectors of Threefry-2x32-20 (Random123's kat_vectors, as in JAX's tests).
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
])
def test_known_answers(key, count, expected):
    out = threefry2x32(*(np.uint32(v) for v in key), *(jnp.uint32(v) for v in count))
    assert tuple(int(v) for v in out) == expected


@pytest.mark.parametrize("n", [0, 1, 2, 7, 127, 128, 129, 1000, 8193, 20001])
def test_random_words_are_jax_threefry_of_the_counters(n):
    """``random_words(key, n) == threefry_2x32(key_data, iota(2h))[:n]``, h = ceil(n/2),
    for typed and raw keys, eager and under ``jit``."""
    h = -(-n // 2)
    for key in (jax.random.key(11), jax.random.PRNGKey(11)):
        data = jax.random.key_data(key) if key.shape == () else key
        expected = np.asarray(threefry_2x32(data, jnp.arange(2 * h, dtype=jnp.uint32)))[:n]
        for store in (True, False):
            np.testing.assert_array_equal(random_words(key, n, store=store), expected)
            jitted = jax.jit(lambda k, store=store: random_words(k, n, store=store))
            np.testing.assert_array_equal(jitted(key), expected)


def test_other_prng_implementations_fall_back_to_jax_random_bits():
    key = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(random_words(key, 9), jax.random.bits(key, (9,), jnp.uint32))


def test_words_differ_across_keys_and_bits_are_balanced():
    """Two keys give different streams; each of the 32 bit positions of 2^16 words is set
    with frequency 1/2 within 5 binomial standard deviations."""
    a, b = (np.asarray(random_words(jax.random.key(s), 2**16)) for s in (0, 1))
    assert np.mean(a == b) < 1e-3
    freq = ((a[:, None] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=0)
    assert np.all(np.abs(freq - 0.5) < 5 * np.sqrt(0.25 / a.size)), freq


def test_counter_space_is_checked():
    with pytest.raises(ValueError, match="`n`"):
        random_words(jax.random.key(0), -1)
