"""Wall-clock timing of JAX calls, for the benchmarks and the studies' speed tables.

JAX dispatches asynchronously: a call returns before its result is computed, so every
timing here blocks on the result (``jax.block_until_ready``) inside the timed interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax

__all__ = ["best_time", "wall_time"]


def wall_time(fn: Callable, *args) -> float:
    """Seconds one call ``fn(*args)`` takes, its result computed (blocked on)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def best_time(fn: Callable, *args, repeats: int = 3) -> float:
    """Minimum wall time of ``fn(*args)`` over ``repeats`` calls, after one warm-up call
    (which compiles a jitted ``fn``)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    jax.block_until_ready(fn(*args))
    return min(wall_time(fn, *args) for _ in range(repeats))
