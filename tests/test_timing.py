"""lesample.timing: blocking wall-clock timings of JAX calls."""

import time

import jax.numpy as jnp
import pytest

from lesample.timing import best_time, wall_time


def test_wall_time_includes_the_call_and_blocks_on_its_result():
    def slow(x):
        time.sleep(0.05)
        return jnp.sum(x)

    assert wall_time(slow, jnp.ones(3)) >= 0.05


def test_best_time_is_the_minimum_of_the_timed_calls_after_a_warm_up():
    delays = iter([0.3, 0.25, 0.02, 0.2])  # warm-up, then three timed calls
    calls = []

    def fn():
        calls.append(1)
        time.sleep(next(delays))
        return jnp.zeros(())

    t = best_time(fn, repeats=3)
    assert len(calls) == 4
    assert 0.02 <= t < 0.2  # the 0.02 s call, not the warm-up or the slower ones


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True, "3"])
def test_best_time_rejects_a_bad_repeats(repeats):
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        best_time(lambda: 0, repeats=repeats)
