"""Warm-up adaptation against closed forms (Gaussian targets, explicit matrices)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesample as le
from lesample import adaptation as ad
from lesample import diagnostics


def _gaussian(dim, kappa, seed=0):
    case = le.GaussianCase.from_condition_number(dim, kappa, gamma=1.0, beta=1.0, seed=seed)
    x = jnp.asarray(case.c, jnp.float32)
    return case, x, le.local_entropy_target(case.loss, x, 1.0, 1.0)


def _diagonal_gaussian(variances):
    """``rho = N(x, diag(variances))``: ``f`` a diagonal quadratic centred at ``x`` = 0."""
    prec = 1.0 / np.asarray(variances, np.float64) - 1.0  # Q = diag(1/var - 1/gamma)
    case = le.GaussianCase(np.diag(prec), np.zeros(len(prec)), gamma=1.0)
    x = jnp.zeros(len(prec), jnp.float32)
    return case, x, le.local_entropy_target(case.loss, x, 1.0, 1.0)


def test_lanczos_extremes_match_eigvalsh():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((30, 30))
    A = (B + B.T) / 2
    lam = np.linalg.eigvalsh(A)
    v0 = jnp.asarray(rng.standard_normal(30), jnp.float32)
    lo, hi, k = ad.lanczos_extremes(lambda v: jnp.asarray(A, jnp.float32) @ v, v0, 30)
    assert k == 30
    np.testing.assert_allclose([lo, hi], [lam[0], lam[-1]], rtol=1e-4, atol=1e-4)
    # Fewer steps: Ritz values lie inside the spectrum.
    lo, hi, k = ad.lanczos_extremes(lambda v: jnp.asarray(A, jnp.float32) @ v, v0, 8)
    assert k == 8 and lam[0] - 1e-4 <= lo <= hi <= lam[-1] + 1e-4
    # More steps than the dimension: stops at the exact invariant subspace.
    lo, hi, k = ad.lanczos_extremes(lambda v: jnp.asarray(A[:5, :5], jnp.float32) @ v,
                                    v0[:5], 40)
    np.testing.assert_allclose([lo, hi], np.linalg.eigvalsh(A[:5, :5])[[0, -1]], atol=1e-4)


def test_hvp_is_the_hessian_times_v():
    case, x, target = _gaussian(6, 10.0)
    v = jnp.arange(6.0)
    np.testing.assert_allclose(ad.hvp(target.grad_H, x, v), case.A @ np.arange(6.0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler", ["baoab", "ula", "mala"])
def test_tuned_step_against_the_stability_limit(sampler):
    """No preconditioner on a Gaussian: the curvature is the precision's spectrum, so the
    step is ``safety`` times the known limit (2/sqrt(lambda_max) BAOAB, 2/lambda_max ULA);
    Ritz values underestimate lambda_max only slightly. MALA's dual-averaged step is
    stable, and BAOAB's friction critically damps the slowest mode ``2 sqrt(lambda_min)``."""
    case, x, target = _gaussian(20, 50.0)
    lam = np.linalg.eigvalsh(case.A)
    run = jax.jit(lambda k: ad.warmup(sampler, target, x, k, num_steps=200, num_chains=4,
                                      preconditioner="none", num_lanczos=20))
    _, params, rec = run(jax.random.key(0))
    np.testing.assert_allclose(rec.lambda_max, lam[-1], rtol=1e-3)
    limit = 2 / np.sqrt(lam[-1]) if sampler == "baoab" else 2 / lam[-1]
    if sampler == "mala":
        assert 0 < float(params.step_size) < limit
        assert np.all(np.isfinite(rec.acceptance_rate))
    else:
        np.testing.assert_allclose(float(params.step_size),
                                   ad.WARMUP_SAMPLERS[sampler] * limit, rtol=1e-3)
    if sampler == "baoab":
        np.testing.assert_allclose(rec.lambda_min, lam[0], rtol=1e-2)
        np.testing.assert_allclose(float(params.friction), 2 * np.sqrt(lam[0]), rtol=1e-2)
    assert int(rec.num_hvps) == 5 * 4 * 20  # 1 + 4 measurements x 4 chains x 20 steps
    assert int(rec.num_grads) == 200 * 4 + (4 * 4 if sampler != "ula" else 0)
    assert not bool(rec.diverged.any())


@pytest.mark.slow
def test_diag_preconditioner_is_the_covariance_diagonal():
    """On ``N(0, diag(v))`` the diagonal preconditioner estimates ``sqrt(v)``. Tolerance:
    4 standard errors of a sample variance, ``v sqrt(2 / ESS)``, with ESS that of the
    squared draws of a run of the tuned kernel as long as the last window's second half."""
    variances = np.array([0.01, 0.25, 1.0, 4.0, 100.0])
    case, x, target = _diagonal_gaussian(variances)
    chains, steps = 64, 800
    run = jax.jit(lambda k: ad.warmup("baoab", target, x, k, num_steps=steps,
                                      num_chains=chains))
    ys, params, rec = run(jax.random.key(1))
    est = np.asarray(params.preconditioner.scale, np.float64) ** 2
    half = int(rec.window_lengths[-1]) // 2
    alg = ad.adapted_sampler("baoab", target, params)
    trace = le.sample(alg, jax.random.key(2), ys, num_steps=half, num_chains=chains,
                      stacked=True)
    sq = np.asarray(trace.draws, np.float64) ** 2
    tol = 4 * variances * np.sqrt(2 / diagnostics.ess(sq, method="mean"))
    assert np.all(np.abs(est - variances) <= tol), (est, variances, tol)
    # Whitened, the curvature is ~1 in every direction.
    assert 0.5 < float(rec.lambda_min[-1]) <= float(rec.lambda_max[-1]) < 2.0


@pytest.mark.slow
@pytest.mark.parametrize("preconditioner", ["diag", "dense"])
def test_adapted_baoab_samples_the_gaussian(preconditioner):
    """BAOAB is exact on Gaussians at any stable step, so after warm-up (a change of
    variables y = L z) the draws' mean and variances match the closed form within 4 Monte
    Carlo standard errors (MCSE of the mean; ``v sqrt(2/ESS)`` for the variances)."""
    case, x, target = _gaussian(10, 100.0, seed=3)
    run = jax.jit(lambda k: ad.warmup("baoab", target, x, k, num_steps=600, num_chains=16,
                                      preconditioner=preconditioner))
    ys, params, rec = run(jax.random.key(0))
    assert not bool(rec.diverged.any())
    alg = ad.adapted_sampler("baoab", target, params)
    trace = le.sample(alg, jax.random.key(1), ys, num_steps=2000, num_chains=16, stacked=True)
    draws = np.asarray(trace.draws, np.float64)
    mean, var = case.mean(np.asarray(x)), np.diag(case.cov)
    err_mean = np.abs(draws.reshape(-1, 10).mean(0) - mean)
    assert np.all(err_mean <= 4 * diagnostics.mcse_mean(draws))
    sq = (draws - mean) ** 2
    err_var = np.abs(sq.reshape(-1, 10).mean(0) - var)
    assert np.all(err_var <= 4 * var * np.sqrt(2 / diagnostics.ess(sq, method="mean")))


def test_bad_arguments_name_themselves():
    _, x, target = _gaussian(4, 2.0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`sampler`"):
        ad.warmup("nuts", target, x, key)
    with pytest.raises(ValueError, match="`preconditioner`"):
        ad.warmup("baoab", target, x, key, preconditioner="full")
    with pytest.raises(ValueError, match="`safety`"):
        ad.warmup("baoab", target, x, key, safety=1.5)
    with pytest.raises(ValueError, match="`num_steps`"):
        ad.warmup("baoab", target, x, key, num_steps=3)
    with pytest.raises(ValueError, match="flat 1-D"):
        ad.warmup("baoab", target, {"a": x}, key, preconditioner="dense")
