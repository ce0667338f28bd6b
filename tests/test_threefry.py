"""``lesample.threefry``: the unrolled Threefry-2x32 is JAX's, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from lesample.threefry import UNROLLED_THREEFRY, random_words, threefry2x32, unrolled


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
    """Word ``2i + j`` of ``random_words(key, n)`` is output ``j`` of Threefry on the counters
    ``(i, i + h)``, h = 2 ceil(n/4): ``threefry_2x32(key_data, iota(2h))`` (outputs 0 then
    outputs 1) interleaved, for typed and raw keys, stored or not, eager and under ``jit``.
    Stored words pass through complex64 bit moves: for n = 20001 these keys give 73 words
    with the bits of a NaN or an infinity, 38 of them signalling NaNs."""
    h = 2 * -(-n // 4)
    for key in (jax.random.key(11), jax.random.PRNGKey(11)):
        data = jax.random.key_data(key) if key.shape == () else key
        outputs = np.asarray(threefry_2x32(data, jnp.arange(2 * h, dtype=jnp.uint32)))
        expected = outputs.reshape(2, h).T.reshape(-1)[:n]
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


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="`n`"):
        random_words(jax.random.key(0), -1)
    for n in (2.5, True, "8"):
        with pytest.raises(TypeError, match="`n`"):
            random_words(jax.random.key(0), n)
    with pytest.raises(TypeError, match="`x0` must be uint32"):
        threefry2x32(np.uint32(0), np.uint32(0), jnp.arange(4), jnp.arange(4, dtype=jnp.uint32))
    for not_a_key in (jnp.zeros(2), jnp.zeros(3, jnp.uint32)):  # JAX's own key check
        with pytest.raises(TypeError, match="PRNG key"):
            random_words(not_a_key, 4)
        with pytest.raises(TypeError, match="PRNG key"):
            jax.random.normal(unrolled(not_a_key), (4,))


@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (300, 41)])
def test_unrolled_impl_gives_jax_random_numbers_bit_for_bit(shape):
    """Keys rewrapped by ``unrolled`` give ``jax.random``'s bits, uniforms and normals
    exactly, eagerly and under ``jit`` and ``vmap``; splits are unchanged."""
    for key in (jax.random.key(5), jax.random.PRNGKey(5)):
        fast = unrolled(key)
        assert jax.random.key_impl(fast) == UNROLLED_THREEFRY
        for draw in (lambda k: jax.random.bits(k, shape, jnp.uint32),
                     lambda k: jax.random.uniform(k, shape),
                     lambda k: jax.random.normal(k, shape)):
            np.testing.assert_array_equal(draw(fast), draw(key))
            jitted = jax.jit(lambda k, draw=draw: draw(unrolled(k)))
            np.testing.assert_array_equal(jitted(key), draw(key))
        keys = jax.random.split(key, 3)
        np.testing.assert_array_equal(
            jax.vmap(lambda k: jax.random.normal(unrolled(k), shape))(keys),
            jax.vmap(lambda k: jax.random.normal(k, shape))(keys))
        np.testing.assert_array_equal(jax.random.key_data(jax.random.split(fast, 3)),
                                      jax.random.key_data(jax.random.split(key, 3)))
    rbg = jax.random.key(0, impl="rbg")
    assert unrolled(rbg) is rbg
