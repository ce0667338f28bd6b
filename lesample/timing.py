"""Timing of JAX calls and the benchmarks' shared command line and tables.

JAX dispatches asynchronously: a call returns before its result is computed, so every
timing here blocks on the result (``jax.block_until_ready``) inside the timed interval.
``timed`` also gives the process's CPU time over the call (all threads): on a shared machine
it is far less disturbed by other processes than the wall clock, so the benchmarks report
ratios of both. ``median_interval`` is the distribution-free interval they put around a
median ratio of timing rounds.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import jax
import numpy as np

__all__ = ["benchmark_args", "best_time", "median_interval", "print_table", "timed",
           "wall_time"]


def timed(fn: Callable, *args) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one call ``fn(*args)``, its result computed (blocked on);
    ``cpu`` is the process's CPU time over the call, summed over its threads."""
    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, time.process_time() - cpu


def wall_time(fn: Callable, *args) -> float:
    """Seconds one call ``fn(*args)`` takes, its result computed (blocked on)."""
    return timed(fn, *args)[0]


def best_time(fn: Callable, *args, repeats: int = 3) -> float:
    """Minimum wall time of ``fn(*args)`` over ``repeats`` calls, after one warm-up call
    (which compiles a jitted ``fn``)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    jax.block_until_ready(fn(*args))
    return min(wall_time(fn, *args) for _ in range(repeats))


def median_interval(x, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median of ``x``: the order statistics ``k`` and
    ``n + 1 - k`` for the largest ``k`` with ``P(Binomial(n, 1/2) < k) <= (1 - level) / 2``;
    NaNs when no ``k >= 1`` qualifies (fewer than 6 values at 95%)."""
    x = np.sort(np.asarray(x, float))
    n = len(x)
    cdf = np.cumsum([math.comb(n, i) for i in range(n + 1)]) / 2.0**n
    k = int(np.searchsorted(cdf, (1 - level) / 2, side="right"))
    return (float(x[k - 1]), float(x[n - k])) if k >= 1 else (math.nan, math.nan)


def benchmark_args(doc: str, configure: Callable | None = None) -> argparse.Namespace:
    """A benchmark script's command line: ``--quick`` (fewer draws) and what ``configure``
    adds to the parser; ``doc``'s first line describes it. Also widens pandas' printed
    tables and prints the devices the run uses."""
    import pandas as pd

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws")
    if configure is not None:
        configure(parser)
    args = parser.parse_args()
    pd.set_option("display.width", 250)
    print(f"devices: {jax.devices()}")
    return args


def print_table(title: str, table, float_format: str = "%.4g") -> None:
    """Print a benchmark's DataFrame under a ``== title ==`` line, without its index."""
    print(f"\n== {title} ==")
    print(table.to_string(index=False, float_format=float_format))
