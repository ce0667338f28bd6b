"""Statistics of the benchmark scripts (``benchmarks/``)."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "entropy_step", Path(__file__).parents[1] / "benchmarks" / "entropy_step.py")
entropy_step = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(entropy_step)


@pytest.mark.parametrize("n", [6, 15, 40])
def test_median_interval_covers_the_median_as_the_binomial_says(n):
    """Over 20,000 samples of ``n`` exponentials (median ln 2), the interval holds the median
    at the exact binomial rate of its order statistics ``(k, n + 1 - k)``, within 5 Monte
    Carlo standard errors, and that rate is at least 95%."""
    samples = np.random.default_rng(n).exponential(size=(20_000, n))
    bounds = np.array([entropy_step.median_interval(s) for s in samples])
    covered = np.mean((bounds[:, 0] <= math.log(2)) & (math.log(2) <= bounds[:, 1]))
    # The interval is (x_(k), x_(n+1-k)); recover k from one sample's order statistics.
    k = 1 + int(np.searchsorted(np.sort(samples[0]), bounds[0, 0]))
    exact = sum(math.comb(n, i) for i in range(k, n + 1 - k)) / 2.0**n
    assert exact >= 0.95
    assert abs(covered - exact) < 5 * math.sqrt(exact * (1 - exact) / len(samples))


def test_median_interval_needs_six_values_at_95_percent():
    assert all(math.isnan(b) for b in entropy_step.median_interval([1.0, 2, 3, 4, 5]))
    assert entropy_step.median_interval([3.0, 1, 2, 6, 5, 4]) == (1.0, 6.0)
