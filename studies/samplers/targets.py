"""Targets of the sampler study, each with a known truth.

A ``StudyTarget`` gives the loss ``f``, the anchor ``x``, ``gamma``, ``beta``, the true
``grad f_gamma(x)`` and a ``w2(samples)`` distance of samples (n, d) to ``rho``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

import lesample as le
from lesample import diagnostics

#: Where long reference runs are cached (override with LESAMPLE_CACHE).
CACHE_DIR = Path(os.environ.get("LESAMPLE_CACHE", Path.home() / ".cache" / "lesample"))


class StudyTarget(NamedTuple):
    name: str
    loss: Callable
    x: jnp.ndarray
    gamma: float
    beta: float
    true_grad: np.ndarray
    w2_row: Callable[[np.ndarray, int], dict]  # (samples (n, d), seed) -> {w2, w2_floor}
    max_curvature: float  # largest eigenvalue of H's Hessian: a scale for stable step sizes
    num_data: int = 0  # > 0: the loss takes a mini-batch of row indices, loss(w, idx)


def gaussian_target(dim: int, kappa: float, gamma: float = 1.0, beta: float = 1.0) -> StudyTarget:
    """``GaussianCase`` whose rho has condition number ``kappa``; ``x`` one unit from ``c``."""
    case = le.GaussianCase.from_condition_number(dim, kappa, gamma=gamma, beta=beta, seed=dim)
    x = case.c + np.random.default_rng(1).standard_normal(dim) / np.sqrt(dim)
    return StudyTarget(
        f"gauss-d{dim}-k{kappa:g}-g{gamma:g}-b{beta:g}",
        case.loss,
        jnp.asarray(x, jnp.float32),
        gamma,
        beta,
        case.grad(x),
        functools.partial(_gaussian_w2_row, case, x),
        float(np.linalg.eigvalsh(case.A).max()),
    )


def _eigen_fit_w2(samples, mean, cov):
    """Bures W2 between rho and the Gaussian fitted to the samples with a covariance
    diagonal in rho's eigenbasis: 2d fitted numbers instead of d^2/2, so with fewer chains
    than dimensions the finite-sample floor stays small."""
    lam, U = np.linalg.eigh(cov)
    z = (np.asarray(samples, np.float64) - mean) @ U
    fit_cov = (U * z.var(0, ddof=1)) @ U.T
    return diagnostics.bures_w2(mean + z.mean(0) @ U.T, fit_cov, mean, cov)


def _gaussian_w2_row(case, x, samples, seed):
    """W2 of the samples' eigenbasis Gaussian fit, and of as many exact draws' fit (the
    floor that finite samples alone give)."""
    mean, cov = case.mean(x), case.cov
    exact = case.sample(x, len(samples), seed=seed)
    return dict(w2=_eigen_fit_w2(samples, mean, cov), w2_floor=_eigen_fit_w2(exact, mean, cov))


@functools.cache
def get_target(name: str) -> StudyTarget:
    """Parse a target name, e.g. ``gauss-d100-k100-g1-b1``."""
    kind, *fields = name.split("-")
    p = {f[0]: float(f[1:]) for f in fields}
    if kind == "gauss":
        return gaussian_target(int(p["d"]), p["k"], p["g"], p["b"])
    if kind == "rugged":
        return grid_target(name, rugged_1d, [-4.0], p["g"], p["b"], (-20.0, 20.0), 40_001)
    if kind == "dwell":
        return grid_target(name, double_well, [0.3, 0.5], p["g"], p["b"], (-5.0, 5.0), 801)
    if kind == "digits":
        return digits_target(p["g"], p["b"])
    raise ValueError(f"unknown study target {name!r}")


def rugged_1d(y):
    """Paper Figure 1 in spirit: eight narrow wells (width 0.4) in [-9, -1] beside a wide
    valley (width 2.5) at y = 4, in a weak confining bowl. Curvature of ``f`` lies in about
    [-2.8, 6.3], so ``H`` is convex for ``gamma`` below about 0.36 (Remark 6) and the
    reference inner step 0.1 is stable."""
    y = jnp.asarray(y)
    centres = jnp.linspace(-9.0, -1.0, 8)
    narrow = jnp.exp(-((y[..., None] - centres) ** 2) / (2 * 0.4**2)).sum(-1)
    wide = jnp.exp(-((y - 4.0) ** 2) / (2 * 2.5**2))
    return (0.005 * y**2 - narrow - 1.3 * wide).sum()


def double_well(y):
    """2-D double well ``(y1^2 - 1)^2 / 4 + y2^2 / 2``, minima at ``(±1, 0)``; ``H`` is
    convex for ``gamma < 1`` (curvature of ``f`` down to -1)."""
    return 0.25 * (y[0] ** 2 - 1.0) ** 2 + 0.5 * y[1] ** 2


class GridTruth(NamedTuple):
    """rho on a tensor grid: quadrature weights for expectations and exact W2 draws."""

    points: np.ndarray  # (n, d)
    weights: np.ndarray  # (n,), sum 1
    spacing: np.ndarray  # (d,)


def grid_truth(loss, x, gamma, beta, lo, hi, num) -> GridTruth:
    """Normalised rho(y; x) on a regular grid over the box [lo, hi]^d (midpoint rule)."""
    x = np.asarray(x, np.float64)
    axes = [np.linspace(lo, hi, num) for _ in x]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, x.size)
    import jax

    f = np.asarray(jax.vmap(loss)(jnp.asarray(mesh, jnp.float32)), np.float64)
    logw = -beta * (f + ((mesh - x) ** 2).sum(1) / (2 * gamma))
    w = np.exp(logw - logw.max())
    return GridTruth(mesh, w / w.sum(), np.array([a[1] - a[0] for a in axes]))


def grid_draws(truth: GridTruth, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exact draws from the piecewise-constant grid law, (n, d)."""
    idx = rng.choice(len(truth.weights), size=n, p=truth.weights)
    return truth.points[idx] + (rng.random((n, truth.points.shape[1])) - 0.5) * truth.spacing


def grid_w2_row(truth: GridTruth, samples: np.ndarray, seed: int) -> dict:
    """Exact W2 (POT) between samples (n, d) and as many grid draws, and the same for
    exact grid draws (the finite-sample floor)."""
    rng = np.random.default_rng(seed)
    n = len(samples)
    ref, exact = grid_draws(truth, n, rng), grid_draws(truth, n, rng)
    return dict(w2=diagnostics.empirical_w2_between(samples, ref),
                w2_floor=diagnostics.empirical_w2_between(exact, ref))


def grid_target(name, loss, x, gamma, beta, box, num) -> StudyTarget:
    truth = grid_truth(loss, x, gamma, beta, box[0], box[1], num)
    mean = truth.weights @ truth.points
    grad = (np.asarray(x, np.float64) - mean) / gamma
    import jax

    where = truth.points[truth.weights > 1e-12 * truth.weights.max()]  # where rho has mass
    hess = jax.vmap(jax.hessian(loss))(jnp.asarray(where, jnp.float32))
    curvature = float(np.linalg.eigvalsh(np.asarray(hess, np.float64)).max()) + 1.0 / gamma
    return StudyTarget(name, loss, jnp.asarray(x, jnp.float32), gamma, beta, grad,
                       functools.partial(grid_w2_row, truth), curvature)


def convexity_threshold(loss, lo, hi, dim, num=2001) -> float:
    """Remark 6: ``H(x, .)`` is convex iff ``gamma < 1 / max(-lambda_min(Hess f))``."""
    import jax

    axes = [np.linspace(lo, hi, num if dim == 1 else 201) for _ in range(dim)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
    hess = jax.vmap(jax.hessian(loss))(jnp.asarray(mesh, jnp.float32))
    lam_min = np.linalg.eigvalsh(np.asarray(hess, np.float64).reshape(-1, dim, dim)).min()
    return float("inf") if lam_min >= 0 else 1.0 / -lam_min


def digits_problem(l2: float = 1e-2):
    """Multinomial logistic regression on scikit-learn's digits (N = 1797, 650 weights):
    ``f(w, idx)`` is the mean cross-entropy over the rows ``idx`` plus ``l2 |w|^2 / 2``."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = jnp.asarray(np.hstack([X / 16.0, np.ones((len(X), 1))]), jnp.float32)
    y = jnp.asarray(y)

    def loss(w, idx=None):
        import jax

        xs, ys = (X, y) if idx is None else (X[idx], y[idx])
        logits = xs @ w.reshape(65, 10)
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), ys[:, None], 1).mean()
        return ce + 0.5 * l2 * w @ w

    return loss, len(X)


def _digits_reference(gamma, beta, x, cache: Path):
    """Long NumPyro NUTS run on rho (4 chains x 2000 draws after 1000 warm-up), cached on
    disk; refuses a run whose R-hat exceeds 1.01."""
    if cache.exists():
        return np.load(cache)["draws"]
    import jax

    loss, _ = digits_problem()
    target = le.local_entropy_target(loss, x, gamma, beta)
    nuts = le.numpyro_hmc(target.H, beta, algo="NUTS", num_warmup=1000)
    trace = le.sample(nuts, jax.random.key(0), x, num_steps=3000, burn_in=1000, num_chains=4)
    draws = np.asarray(trace.draws, np.float64)
    rhat = diagnostics.rhat(draws).max()
    if not rhat <= 1.01:  # a NaN R-hat (a stuck run) fails too
        raise RuntimeError(f"digits reference NUTS run not converged: max R-hat {rhat:.4f}")
    import io

    from lesample.store import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, draws=draws)
    atomic_write_bytes(cache, buf.getvalue())
    return draws


def digits_target(gamma: float, beta: float) -> StudyTarget:
    """rho around a partly trained point (200 full-batch gradient steps from 0)."""
    import jax

    loss, n = digits_problem()
    w = jnp.zeros(650)
    step = jax.jit(lambda w: w - 0.5 * jax.grad(loss)(w))
    for _ in range(200):
        w = step(w)
    cache = CACHE_DIR / f"digits-g{gamma:g}-b{beta:g}-v1.npz"
    draws = _digits_reference(gamma, beta, w, cache).reshape(-1, 650)
    mean = draws.mean(0)

    def w2_row(samples, seed):
        pick = np.random.default_rng(seed).choice(len(draws), 2 * len(samples), replace=False)
        ref, exact = draws[pick[: len(samples)]], draws[pick[len(samples):]]
        return dict(w2=diagnostics.empirical_w2_between(samples, ref),
                    w2_floor=diagnostics.empirical_w2_between(exact, ref))

    hess = np.asarray(jax.hessian(loss)(w), np.float64)
    curvature = float(np.linalg.eigvalsh(hess).max()) + 1.0 / gamma
    grad = (np.asarray(w, np.float64) - mean) / gamma
    return StudyTarget(f"digits-g{gamma:g}-b{beta:g}", loss, w, gamma, beta, grad, w2_row,
                       curvature, n)
