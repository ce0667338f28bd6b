"""Convergence and accuracy diagnostics for MCMC draws (docs/gaussian.md, docs/samplers.md).

Draws layout: chains on axis 0, draws on axis 1, i.e. ``(chains, draws)`` or
``(chains, draws, *event)``, or a pytree whose leaves all have that layout; the event dims of
all leaves are flattened and concatenated, in ``jax.tree_util.tree_leaves`` order, into
``(chains, draws, d)`` (see ``as_chains_draws_dim``). Per-coordinate results have shape
``(d,)`` in that order.

- ESS / R-hat / MCSE: rank-normalized split R-hat and bulk/tail ESS (Vehtari et al. 2021) from
  ``arviz_stats``' NumPy array layer (``arviz_stats.base.array_stats``; the top-level
  ``arviz_stats.ess`` needs xarray and is absent without it).
- W2 to the analytic Gaussian: the closed form between Gaussians (Bures), exact optimal
  transport between samples and Gaussian draws (POT network simplex), or the sliced distance
  for large n.
- ``relative_error`` for the estimate of ``grad f_gamma(x)`` against the closed form, and
  ``efficiency`` (ESS per gradient evaluation and per second).

All functions take concrete (not traced) arrays and compute in float64 NumPy.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import numpy as np
import ot
from arviz_stats.base import array_stats

from lesample.checks import check_positive

PyTree = Any

__all__ = [
    "ConvergenceWarning",
    "as_chains_draws_dim",
    "ess",
    "rhat",
    "mcse_mean",
    "bures_w2",
    "gaussian_fit_w2",
    "gaussian_draws",
    "empirical_w2",
    "empirical_w2_between",
    "sliced_w2",
    "w2_to_gaussian",
    "relative_error",
    "efficiency",
    "EXACT_W2_MAX_SAMPLES",
]

ESS_METHODS = ("bulk", "tail", "mean")
W2_METHODS = ("auto", "bures", "exact", "sliced")
# The exact solver needs an n x n float64 cost matrix (200 MB at n = 5000, ~5 s).
EXACT_W2_MAX_SAMPLES = 5000
TAIL_PROB = (0.05, 0.95)
MIN_CHAINS = 2
MIN_DRAWS = 4


class ConvergenceWarning(UserWarning):
    """Draws that do not support their estimates: a chain that never moves, or (from
    ``lesample.sample``) R-hat or bulk ESS failing the usual thresholds."""


# --------------------------------------------------------------------------- validation


def _as_float_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged nested lists and the like
        raise TypeError(f"`{name}` must be array-like; could not convert it: {err}") from err
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"`{name}` must hold real numbers; got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise TypeError(f"`{name}` must be real; got complex dtype {arr.dtype}.")
    return arr.astype(np.float64)


def _check_finite(name: str, arr: np.ndarray, hint: str = "") -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"`{name}` contains {bad} non-finite value(s) (nan/inf).{hint}")


def _gaussian_params(
    mean, cov, mean_name: str = "mean", cov_name: str = "cov"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``mean`` (d,) and ``cov`` (d, d) symmetric PSD; return them as float64."""
    m = _as_float_array(mean_name, mean)
    if m.ndim != 1 or m.shape[0] == 0:
        raise ValueError(
            f"`{mean_name}` must be a non-empty vector of shape (d,); got shape {m.shape}. "
            f"For a 1-D Gaussian pass `{mean_name}=[m]`, `{cov_name}=[[s**2]]`."
        )
    d = m.shape[0]
    S = _as_float_array(cov_name, cov)
    if S.shape != (d, d):
        raise ValueError(
            f"`{cov_name}` must have shape (d, d) = ({d}, {d}) to match `{mean_name}`; "
            f"got {S.shape}."
        )
    _check_finite(mean_name, m)
    _check_finite(cov_name, S)
    scale = max(1.0, float(np.abs(S).max()))
    if not np.allclose(S, S.T, rtol=1e-8, atol=1e-10 * scale):
        raise ValueError(f"`{cov_name}` must be symmetric; pass ({cov_name} + {cov_name}.T) / 2.")
    S = (S + S.T) / 2
    lam_min = float(np.linalg.eigvalsh(S).min())
    if lam_min < -1e-8 * scale:
        raise ValueError(
            f"`{cov_name}` must be positive semi-definite; its smallest eigenvalue is "
            f"{lam_min:.3g}."
        )
    return m, S


def _samples(
    samples, d: int | None = None, name: str = "samples", ref: str = "`mean` has length"
) -> np.ndarray:
    """Validate a finite (n, d) sample matrix with n >= 1 (``d`` checked against ``ref``)."""
    X = _as_float_array(name, samples)
    if X.ndim == 1 and d == 1:
        raise ValueError(
            f"`{name}` must have shape (n, d); got a vector of shape {X.shape}. "
            f"For 1-D samples pass `{name}[:, None]`."
        )
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty (n, d) matrix, one sample per row; got shape "
            f"{X.shape}. Reshape MCMC draws with `as_chains_draws_dim(draws).reshape(-1, d)`."
        )
    if d is not None and X.shape[1] != d:
        raise ValueError(
            f"`{name}` has dimension {X.shape[1]} per sample but {ref} {d}; "
            "they must describe the same space."
        )
    _check_finite(name, X, " Drop diverged chains before computing W2.")
    return X


def _psd_sqrt(S: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (tiny negative eigenvalues clipped)."""
    w, V = np.linalg.eigh((S + S.T) / 2)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


# --------------------------------------------------------------------------- MCMC draws


def as_chains_draws_dim(draws) -> np.ndarray:
    """Return draws as a float64 NumPy array of shape ``(chains, draws, d)``.

    Args:
      draws: an array of shape ``(chains, draws)`` (then ``d = 1``) or
        ``(chains, draws, *event)`` (event dims flattened, C order), or a pytree whose leaves
        all have such a shape with the same ``(chains, draws)``; the leaves' flattened event
        dims are concatenated in ``jax.tree_util.tree_leaves`` order.

    Raises:
      ValueError: a leaf with fewer than 2 dims, leaves disagreeing on ``(chains, draws)``,
        an empty pytree, or ``d = 0``.
      TypeError: non-numeric leaves.
    """
    if isinstance(draws, np.ndarray | jax.Array):
        leaves = [draws]
    else:
        leaves = jax.tree_util.tree_leaves(draws)
    if not leaves:
        raise ValueError("`draws` is an empty pytree; pass arrays of shape (chains, draws, ...).")
    blocks = []
    for i, leaf in enumerate(leaves):
        arr = _as_float_array("draws", leaf)
        where = "" if len(leaves) == 1 else f" (leaf {i} of the pytree)"
        if arr.ndim < 2:
            raise ValueError(
                f"`draws`{where} must have shape (chains, draws, *event); got shape {arr.shape}. "
                "Add a chain axis with `x[None]` for a single chain (R-hat and ESS need >= 2), "
                "and convert nested lists with np.asarray first."
            )
        if blocks and arr.shape[:2] != blocks[0].shape[:2]:
            raise ValueError(
                f"`draws` leaves must share (chains, draws); leaf {i} has {arr.shape[:2]}, "
                f"leaf 0 has {blocks[0].shape[:2]}."
            )
        blocks.append(arr.reshape(arr.shape[0], arr.shape[1], -1))
    out = np.concatenate(blocks, axis=2)
    if out.shape[2] == 0:
        raise ValueError(f"`draws` has no coordinates (event size 0); got shape {out.shape}.")
    return out


def _mcmc_draws(draws) -> np.ndarray:
    x = as_chains_draws_dim(draws)
    chains, n = x.shape[:2]
    if chains < MIN_CHAINS or n < MIN_DRAWS:
        raise ValueError(
            f"`draws` needs >= {MIN_CHAINS} chains and >= {MIN_DRAWS} draws per chain for "
            f"split R-hat/ESS; got {chains} chain(s) x {n} draw(s). Run more chains (vmap the "
            "kernel) or keep more draws."
        )
    _check_finite("draws", x, " Drop diverged chains (see `lesample.chain_mean`) first.")
    if chains > n:
        warnings.warn(f"`draws` has more chains ({chains}) than draws ({n}): were the axes "
                      "swapped? The layout is (chains, draws, *event).", UserWarning,
                      stacklevel=3)
    return x


def _stuck_as_nan(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` (d,) with NaN where some chain of ``x`` (chains, draws, d) never changes its
    value (a sampler that accepts nothing), with a ``ConvergenceWarning`` naming the chains:
    such draws carry no information, whatever ESS the formula gives."""
    stuck = np.all(x == x[:, :1], axis=1)  # (chains, d)
    if not stuck.any():
        return out
    chains = np.flatnonzero(stuck.any(axis=1))
    warnings.warn(f"{len(chains)} chain(s) never moved in some coordinate (chains "
                  f"{chains[:10].tolist()}): the sampler is stuck (acceptance rate 0?); the "
                  "ESS, MCSE and R-hat of those coordinates are NaN.", ConvergenceWarning,
                  stacklevel=3)
    return np.where(stuck.any(axis=0), np.nan, out)


def ess(draws, method: str = "bulk") -> np.ndarray:
    """Per-coordinate effective sample size, shape ``(d,)``.

    Args:
      draws: ``(chains, draws[, *event])`` array or pytree of such (``as_chains_draws_dim``);
        at least 2 chains and 4 draws per chain.
      method: ``"bulk"`` (rank-normalized split ESS), ``"tail"`` (the smaller ESS of the
        indicators of the 5% and 95% quantiles), or ``"mean"`` (split ESS of the raw values,
        the one that governs the MCSE of the mean).

    The total number of draws is ``chains * draws``; ESS can exceed it for antithetic chains.
    A coordinate in which some chain never moves gets NaN, with a ``ConvergenceWarning``
    (constant draws would otherwise give an ESS equal to the number of draws). More chains
    than draws gives a ``UserWarning`` (swapped axes?), as ArviZ does.
    """
    if not isinstance(method, str) or method not in ESS_METHODS:
        raise ValueError(f"`method` must be one of {ESS_METHODS}; got {method!r}.")
    x = _mcmc_draws(draws)
    kwargs = {"prob": TAIL_PROB} if method == "tail" else {}
    with np.errstate(invalid="ignore", divide="ignore"):
        out = array_stats.ess(x, chain_axis=0, draw_axis=1, method=method, **kwargs)
    return _stuck_as_nan(x, np.asarray(out, dtype=np.float64))


def rhat(draws) -> np.ndarray:
    """Rank-normalized split R-hat per coordinate, shape ``(d,)`` (Vehtari et al. 2021).

    Values near 1 (say < 1.01) indicate mixed chains. A coordinate in which some chain never
    moves gives NaN, with a ``ConvergenceWarning`` (as ``ess``). ``draws`` as in ``ess``.
    """
    x = _mcmc_draws(draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = array_stats.rhat(x, chain_axis=0, draw_axis=1, method="rank")
    return _stuck_as_nan(x, np.asarray(out, dtype=np.float64))


def mcse_mean(draws) -> np.ndarray:
    """Monte Carlo standard error of the mean of each coordinate, shape ``(d,)``.

    ``sd / sqrt(ESS_mean)`` with ``sd`` the standard deviation (ddof=1) of all pooled draws and
    ``ESS_mean = ess(draws, "mean")``. ``draws`` as in ``ess``.
    """
    x = _mcmc_draws(draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = array_stats.mcse(x, chain_axis=0, draw_axis=1, method="mean")
    return _stuck_as_nan(x, np.asarray(out, dtype=np.float64))


# --------------------------------------------------------------------------- W2


def bures_w2(mean1, cov1, mean2, cov2) -> float:
    """W2 between ``N(mean1, cov1)`` and ``N(mean2, cov2)`` (the Bures-Wasserstein formula).

    ``W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^{1/2} S1 S2^{1/2})^{1/2})``, computed in the
    equivalent form ``min_U |S1^{1/2} - S2^{1/2} U|_F^2`` over orthogonal ``U`` (``U`` from
    the SVD of ``S1^{1/2} S2^{1/2}``), a sum of squares: it is >= 0 and is not lost to
    cancellation when the covariances are close. Covariances may be singular (PSD).

    Args:
      mean1, mean2: (d,) means.
      cov1, cov2: (d, d) symmetric positive semi-definite covariances.
    """
    m1, S1 = _gaussian_params(mean1, cov1, "mean1", "cov1")
    m2, S2 = _gaussian_params(mean2, cov2, "mean2", "cov2")
    if m1.shape != m2.shape:
        raise ValueError(
            f"`mean1` and `mean2` must have the same length; got {m1.shape[0]} and {m2.shape[0]}."
        )
    A, B = _psd_sqrt(S1), _psd_sqrt(S2)
    # tr(A B U) is maximal at U = Q P^T for A B = P diag(s) Q^T; the maximum is
    # sum(s) = tr((S2^{1/2} S1 S2^{1/2})^{1/2}).
    P, _, Qt = np.linalg.svd(A @ B)
    U = Qt.T @ P.T
    cov_term = float(np.sum((A - B @ U) ** 2))
    return math.sqrt(float(np.sum((m1 - m2) ** 2)) + cov_term)


def gaussian_fit_w2(samples, mean, cov) -> float:
    """Bures W2 between the Gaussian fit of ``samples`` and ``N(mean, cov)``.

    The fit uses the sample mean and the unbiased (ddof=1) sample covariance of ``samples``
    (n, d), n >= 2. It sees only the first two moments: it is 0 for any non-Gaussian sample
    with the right mean and covariance.
    """
    m, S = _gaussian_params(mean, cov)
    X = _samples(samples, m.shape[0])
    if X.shape[0] < 2:
        raise ValueError(f"`samples` needs >= 2 rows for a covariance; got {X.shape[0]}.")
    S_hat = np.atleast_2d(np.cov(X, rowvar=False, ddof=1))
    return bures_w2(X.mean(axis=0), S_hat, m, S)


def gaussian_draws(mean, cov, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` i.i.d. draws, shape (n, d), from ``N(mean, cov)`` (``cov`` may be singular).

    ``mean + Z cov^{1/2}`` with ``Z = np.random.default_rng(seed).standard_normal((n, d))`` and
    the symmetric square root, so the draws are a deterministic function of ``seed``. These are
    the reference draws of ``empirical_w2`` and ``sliced_w2``.
    """
    m, S = _gaussian_params(mean, cov)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"`n` must be a positive integer; got {n!r}.")
    Z = np.random.default_rng(seed).standard_normal((int(n), m.shape[0]))
    return m + Z @ _psd_sqrt(S)


def empirical_w2_between(X, Y, *, num_iter_max: int = 10**7) -> float:
    """Exact W2 between the uniform empirical measures of ``X`` (n, d) and ``Y`` (m, d).

    Solves the optimal transport LP with POT's network simplex (``ot.emd2``) on the
    squared-Euclidean cost and returns the square root of the optimal cost.

    Raises:
      RuntimeError: the solver stopped before optimality (raise ``num_iter_max``) or failed.
    """
    X = _samples(X, name="X")
    Y = _samples(Y, X.shape[1], name="Y", ref="`X` has dimension")
    a = np.full(X.shape[0], 1.0 / X.shape[0])
    b = np.full(Y.shape[0], 1.0 / Y.shape[0])
    with warnings.catch_warnings():
        # POT warns *and* reports the same status in the log; we turn the status into an error.
        warnings.simplefilter("ignore", UserWarning)
        cost, log = ot.emd2(a, b, ot.dist(X, Y), numItermax=int(num_iter_max), log=True)
    if log["result_code"] != 1:  # 1 = OPTIMAL in POT's network simplex
        raise RuntimeError(
            f"ot.emd2 did not converge: {log['warning']} (result_code {log['result_code']}, "
            f"`num_iter_max` = {num_iter_max}). Increase `num_iter_max` or use `sliced_w2`."
        )
    return math.sqrt(max(float(cost), 0.0))


def empirical_w2(samples, mean, cov, *, seed: int = 0, num_iter_max: int = 10**7) -> float:
    """Exact W2 between the empirical measure of ``samples`` (n, d) and ``n`` Gaussian draws.

    The Gaussian side is ``gaussian_draws(mean, cov, n, seed=seed)``, so the result estimates
    ``W2(law of samples, N(mean, cov))`` with a finite-sample bias of order
    ``n^{-1/2}`` (up to logs) in 1-D and ``n^{-1/d}`` in ``d >= 3``: it does not go to 0 for
    exact samples at fixed n. Compare runs at equal n. Requires n <= 5000
    (``EXACT_W2_MAX_SAMPLES``); cost O(n^2) memory, about 5 s at n = 5000.

    Raises:
      ValueError: n > 5000 (use ``sliced_w2``), or bad shapes / non-finite samples.
      RuntimeError: the exact solver did not converge within ``num_iter_max`` iterations.
    """
    m, S = _gaussian_params(mean, cov)
    X = _samples(samples, m.shape[0])
    n = X.shape[0]
    if n > EXACT_W2_MAX_SAMPLES:
        raise ValueError(
            f"`samples` has n = {n} rows; exact W2 needs an n x n cost matrix and is limited to "
            f"n <= {EXACT_W2_MAX_SAMPLES}. Use `sliced_w2` (or thin the draws)."
        )
    return empirical_w2_between(X, gaussian_draws(m, S, n, seed=seed), num_iter_max=num_iter_max)


def sliced_w2(samples, mean, cov, *, num_projections: int = 500, seed: int = 0) -> float:
    """Sliced W2 between ``samples`` (n, d) and ``gaussian_draws(mean, cov, n, seed=seed)``.

    ``(mean over random unit directions theta of W2^2(theta . X, theta . Y))^{1/2}`` with
    ``ot.sliced_wasserstein_distance(p=2)``. It is a lower bound on the W2 between the two
    samples, and is on a different scale from W2: for a translation by ``s`` it is about
    ``|s| / sqrt(d)``. In 1-D it equals the exact empirical W2. The projections are drawn from
    a ``np.random.RandomState(seed)`` (POT's integer seed would reseed NumPy's global RNG).
    """
    m, S = _gaussian_params(mean, cov)
    X = _samples(samples, m.shape[0])
    if isinstance(num_projections, bool) or not isinstance(num_projections, int | np.integer):
        raise TypeError(f"`num_projections` must be an int; got {num_projections!r}.")
    if num_projections < 1:
        raise ValueError(f"`num_projections` must be >= 1; got {num_projections}.")
    Y = gaussian_draws(m, S, X.shape[0], seed=seed)
    out = ot.sliced_wasserstein_distance(
        X, Y, n_projections=int(num_projections), p=2, seed=np.random.RandomState(seed)
    )
    return float(out)


def w2_to_gaussian(samples, mean, cov, *, method: str = "auto", seed: int = 0) -> float:
    """W2-type distance between ``samples`` (n, d) and ``N(mean, cov)``.

    method: ``"bures"`` (``gaussian_fit_w2``), ``"exact"`` (``empirical_w2``), ``"sliced"``
    (``sliced_w2``), or ``"auto"``: exact if n <= 5000, else sliced. Note that the sliced value
    is on a smaller scale than W2 (see ``sliced_w2``): do not compare "auto" results across
    the n = 5000 threshold.
    """
    if not isinstance(method, str) or method not in W2_METHODS:
        raise ValueError(f"`method` must be one of {W2_METHODS}; got {method!r}.")
    if method == "auto":
        n = np.shape(samples)[0] if np.ndim(samples) else 0
        method = "exact" if n <= EXACT_W2_MAX_SAMPLES else "sliced"
    if method == "bures":
        return gaussian_fit_w2(samples, mean, cov)
    if method == "exact":
        return empirical_w2(samples, mean, cov, seed=seed)
    return sliced_w2(samples, mean, cov, seed=seed)


# --------------------------------------------------------------------------- errors, cost


def relative_error(estimate: PyTree, truth: PyTree) -> float:
    """``|estimate - truth| / |truth|``, Euclidean norms over all leaves of the pytrees.

    ``estimate`` and ``truth`` must have the same tree structure and leaf shapes. If
    ``|truth| == 0`` the absolute error ``|estimate|`` is returned instead (a relative error is
    undefined there). A non-finite ``estimate`` (a diverged run) gives ``inf``; a non-finite
    ``truth`` raises ``ValueError``.
    """
    est_leaves, est_def = jax.tree_util.tree_flatten(estimate)
    tru_leaves, tru_def = jax.tree_util.tree_flatten(truth)
    if est_def != tru_def:
        raise ValueError(
            f"`estimate` and `truth` must have the same pytree structure; got {est_def} and "
            f"{tru_def}."
        )
    if not tru_leaves:
        raise ValueError("`truth` is an empty pytree.")
    est = [_as_float_array("estimate", e) for e in est_leaves]
    tru = [_as_float_array("truth", t) for t in tru_leaves]
    for i, (e, t) in enumerate(zip(est, tru, strict=True)):
        if e.shape != t.shape:
            raise ValueError(
                f"`estimate` leaf {i} has shape {e.shape} but `truth` leaf {i} has {t.shape}."
            )
        _check_finite("truth", t)
    if not all(np.all(np.isfinite(e)) for e in est):
        return math.inf
    sq_err = sum(float(np.sum((e - t) ** 2)) for e, t in zip(est, tru, strict=True))
    sq_tru = sum(float(np.sum(t**2)) for t in tru)
    err = math.sqrt(sq_err)
    return err / math.sqrt(sq_tru) if sq_tru > 0 else err


def efficiency(ess_values, num_grads, seconds) -> dict[str, float]:
    """Sampling efficiency from per-coordinate ESS (d,) and the cost of the run.

    Returns ``{"ess_min", "ess_median", "ess_per_grad", "ess_per_second"}`` with
    ``ess_per_grad = ess_min / num_grads`` (gradient evaluations of the whole run, all chains)
    and ``ess_per_second = ess_min / seconds`` (wall-clock time).
    """
    e = _as_float_array("ess_values", ess_values).reshape(-1)
    if e.size == 0:
        raise ValueError("`ess_values` is empty; pass the (d,) output of `ess`.")
    _check_finite("ess_values", e, " Drop coordinates whose ESS is NaN first.")
    if np.any(e < 0):
        raise ValueError(f"`ess_values` must be >= 0; got min {float(e.min())}.")
    g = check_positive("num_grads", num_grads)
    s = check_positive("seconds", seconds)
    ess_min = float(e.min())
    return {
        "ess_min": ess_min,
        "ess_median": float(np.median(e)),
        "ess_per_grad": ess_min / g,
        "ess_per_second": ess_min / s,
    }
