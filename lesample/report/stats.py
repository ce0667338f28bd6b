"""The intervals behind a finding's verdict: a finding says "meets" or "agrees" only when a
95% interval lies wholly on one side of the threshold; otherwise it says "not resolved",
and with a single seed, which gives no interval, "one seed: no interval"."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = [
    "NO_INTERVAL", "Interval", "binomial_interval", "decide", "difference_interval",
    "mean_interval", "t_halfwidth",
]

NO_INTERVAL = "one seed: no interval"


def t_halfwidth(sd, n, level: float = 0.95):
    """Half-width of the two-sided Student-t interval of a mean: ``t_{n-1} sd / sqrt(n)``.
    Elementwise; NaN where ``n < 2`` (one value has no interval)."""
    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf(0.5 + level / 2, np.where(n >= 2, n - 1, np.nan))
        out = t * sd / np.sqrt(n)
    return out if out.ndim else float(out)


class Interval(NamedTuple):
    """An estimate and its two-sided interval; ``lo`` and ``hi`` are NaN when there is none."""

    estimate: float
    lo: float
    hi: float
    n: int  #: the number of values (per group, the smaller one for a difference)

    @property
    def resolved(self) -> bool:
        """Whether there is an interval at all (two values or more)."""
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi))


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def mean_interval(values, level: float = 0.95) -> Interval:
    """The mean of ``values`` (NaNs dropped) with its Student-t interval."""
    x = _finite(values)
    if x.size == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(x.mean())
    half = t_halfwidth(x.std(ddof=1), x.size, level) if x.size >= 2 else np.nan
    return Interval(mean, mean - half, mean + half, int(x.size))


def difference_interval(a, b, level: float = 0.95) -> Interval:
    """``mean(a) - mean(b)`` with Welch's interval (unequal variances; NaNs dropped). No
    interval when either side has fewer than two values."""
    a, b = _finite(a), _finite(b)
    n = int(min(a.size, b.size))
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    diff = float(a.mean() - b.mean())
    if n < 2:
        return Interval(diff, np.nan, np.nan, n)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return Interval(diff, diff, diff, n)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    return Interval(diff, diff - half, diff + half, n)


def binomial_interval(successes: int, trials: int, level: float = 0.95) -> Interval:
    """The share ``successes / trials`` with its exact (Clopper-Pearson) interval, which
    covers the true share with probability at least ``level`` whatever it is."""
    k, n = int(successes), int(trials)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"binomial_interval: need 0 <= successes <= trials and trials >= 1, "
                         f"got successes={successes}, trials={trials}")
    alpha = 1 - level
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(k / n, lo, hi, n)


def decide(lo: float, hi: float, threshold: float) -> str | None:
    """``"below"`` when the whole interval ``[lo, hi]`` is below ``threshold``, ``"above"``
    when it is wholly above, ``None`` when it straddles it or is missing (NaN)."""
    if hi < threshold:
        return "below"
    if lo > threshold:
        return "above"
    return None
