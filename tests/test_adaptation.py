"""Warm-up adaptation against closed forms (Gaussian targets, explicit matrices)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesample as le
from lesample import adaptation as ad
from lesample import diagnostics
from studies.gym.targets import potential_target


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
    stable, and BAOAB's friction damps the slowest mode at ratio ``DAMPING``:
    ``2 DAMPING sqrt(lambda_min)``."""
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
        np.testing.assert_allclose(float(params.friction), 2 * ad.DAMPING * np.sqrt(lam[0]),
                                   rtol=1e-2)
    # The start, then 16 warm-up draws after each of the 4 windows, 20 steps each.
    assert int(rec.num_hvps) == (1 + 4 * 16) * 20
    assert int(rec.num_grads) == 200 * 4 + (4 * 4 if sampler != "ula" else 0)
    assert int(rec.num_unstable.sum()) == 0


@pytest.mark.slow
def test_diag_preconditioner_is_the_covariance_diagonal():
    """On ``N(0, diag(v))`` the diagonal preconditioner estimates ``sqrt(v)``. Tolerance:
    4 standard errors of a sample variance, ``v sqrt(2 / ESS)``, with ESS that of the
    squared draws of a run of the tuned kernel as long as the last window's second half."""
    variances = np.array([0.01, 0.25, 1.0, 4.0, 100.0])
    case, x, target = _diagonal_gaussian(variances)
    chains, steps = 64, 800
    run = jax.jit(lambda k: ad.warmup("baoab", target, x, k, num_steps=steps,
                                      num_chains=chains, preconditioner="diag"))
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
    assert int(rec.num_unstable.sum()) == 0
    alg = ad.adapted_sampler("baoab", target, params)
    trace = le.sample(alg, jax.random.key(1), ys, num_steps=2000, num_chains=16, stacked=True)
    draws = np.asarray(trace.draws, np.float64)
    mean, var = case.mean(np.asarray(x)), np.diag(case.cov)
    err_mean = np.abs(draws.reshape(-1, 10).mean(0) - mean)
    assert np.all(err_mean <= 4 * diagnostics.mcse_mean(draws))
    sq = (draws - mean) ** 2
    err_var = np.abs(sq.reshape(-1, 10).mean(0) - var)
    assert np.all(err_var <= 4 * var * np.sqrt(2 / diagnostics.ess(sq, method="mean")))


@pytest.mark.slow
def test_adapted_baoab_samples_the_banana():
    """A curved target whose largest curvature grows with ``x1^2`` along the banana: the
    step set against the design curvature keeps every chain stable over 4 x 20000 draws,
    and the moments match the closed form (``x1 ~ N(0, 100)``, ``x2 | x1 ~ N(b (x1^2 -
    100), 1)``: means 0, variances 100 and ``1 + 2 b^2 100^2``) within 4 Monte Carlo
    standard errors (of the mean of the draws and of their squared deviations). With
    ``tail=0`` (the draws' mean frequency) all four chains of this seed diverge."""
    b = 0.03
    y0 = jnp.zeros(2)

    def f(y):
        return y[0] ** 2 / 200.0 + (y[1] - b * (y[0] ** 2 - 100.0)) ** 2 / 2

    target = potential_target(f)  # rho ∝ exp(-f), no anchor
    ys, params, rec = jax.jit(lambda k: ad.warmup("baoab", target, y0, k, num_chains=4))(
        jax.random.key(1))
    assert params.preconditioner.chol is not None  # "auto": 1000 pooled draws, d = 2
    alg = ad.adapted_sampler("baoab", target, params)
    trace = jax.jit(lambda k: le.run_chains(alg, k, ys, num_steps=20000, num_chains=4,
                                            stacked=True))(jax.random.key(1))
    assert not np.asarray(trace.diverged).any()
    draws = np.asarray(trace.draws, np.float64)
    mean, var = np.zeros(2), np.array([100.0, 1 + 2 * b**2 * 100.0**2])
    assert np.all(np.abs(draws.reshape(-1, 2).mean(0) - mean)
                  <= 4 * diagnostics.mcse_mean(draws))
    sq = (draws - mean) ** 2
    assert np.all(np.abs(sq.reshape(-1, 2).mean(0) - var) <= 4 * diagnostics.mcse_mean(sq))


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
    with pytest.raises(ValueError, match="`damping`"):
        ad.warmup("baoab", target, x, key, damping=0.0)
    with pytest.raises(ValueError, match="`tail`"):
        ad.warmup("baoab", target, x, key, tail=-1.0)
    with pytest.raises(ValueError, match="`curvature_points`"):
        ad.warmup("baoab", target, x, key, curvature_points=0)
    with pytest.raises(TypeError, match="`num_chains`"):
        ad.warmup("baoab", target, x, key, num_chains=2.0)


def test_design_curvature_covers_the_draws():
    """Constant curvature (a Gaussian) is its own design curvature; otherwise the frequency
    ``sqrt`` of it is the draws' mean plus ``tail`` standard deviations, which by
    Samuelson's inequality (max <= mean + sd sqrt(n - 1)) is above every draw's once
    ``tail >= sqrt(n - 1)``."""
    np.testing.assert_allclose(ad.design_curvature(jnp.full(16, 9.0)), 9.0, rtol=1e-6)
    lam = jnp.asarray([1.0, 4.0, 9.0, 16.0])
    s = np.sqrt(np.asarray(lam))
    np.testing.assert_allclose(ad.design_curvature(lam, 2.0), (s.mean() + 2 * s.std()) ** 2,
                               rtol=1e-6)
    lam = jnp.asarray(np.random.default_rng(0).exponential(size=16) ** 2, jnp.float32)
    assert float(ad.design_curvature(lam, np.sqrt(15.0))) >= float(lam.max()) * (1 - 1e-6)
    with pytest.raises(ValueError, match="`tail`"):
        ad.design_curvature(lam, -1.0)
    with pytest.raises(TypeError, match="`tail`"):
        ad.design_curvature(lam, "4")


def test_auto_preconditioner_is_dense_given_enough_draws():
    """``"auto"``: dense when the last window's second half pools at least
    ``DENSE_DRAWS_PER_DIM`` draws per coordinate (here 4 chains x 250 = 1000 draws: dense
    up to d = 100), diagonal otherwise and for pytrees."""
    key = jax.random.key(0)
    for dim, dense in ((100, True), (101, False)):
        _, x, target = _diagonal_gaussian(np.ones(dim) * 0.5)
        _, params, _ = ad.warmup("baoab", target, x, key, num_steps=1000, num_chains=4,
                                 num_lanczos=2)
        assert (params.preconditioner.chol is not None) == dense
    y = {"a": jnp.zeros(3)}
    target = le.local_entropy_target(lambda p: jnp.sum(p["a"] ** 2) / 2, y, 1.0, 1.0)
    _, params, _ = ad.warmup("baoab", target, y, key, num_steps=40, num_chains=4,
                             num_lanczos=2)
    assert params.preconditioner.chol is None


# --------------------------------------------------------------------------- adaptive inner loop


def test_adaptive_mean_meets_its_tolerance_on_the_gaussian():
    """BAOAB on a Gaussian rho stops when its batch-means standard error is below tol of
    |x - <y>|; the standard error is the expected error norm, so the actual relative error
    of grad f_gamma against the closed form stays below 4 tol."""
    from lesample.stopping import adaptive_mean

    case, _, _ = _gaussian(5, 10.0, seed=2)
    x = jnp.asarray(case.c + 1.0, jnp.float32)
    target = le.local_entropy_target(case.loss, x, 1.0, 1.0)
    lam = np.linalg.eigvalsh(case.A)
    kernel = le.baoab(target.grad_H, 1.0 / np.sqrt(lam[-1]), 1.0, friction=2 * np.sqrt(lam[0]))
    tol = 0.05
    run = jax.jit(lambda k: adaptive_mean(kernel, x, k, tol=tol, max_steps=20_000, chunk=50,
                                          num_chains=4))
    out = run(jax.random.key(0))
    assert bool(out.converged) and float(out.rel_error) <= tol
    assert 200 <= int(out.num_steps) < 20_000
    assert int(out.num_grads) == 4 * int(out.num_steps)
    truth = case.mean(np.asarray(x))
    err = np.linalg.norm(np.asarray(out.mean) - truth) / np.linalg.norm(np.asarray(x) - truth)
    assert err <= 4 * tol
    # A tolerance it cannot meet: stops at max_steps and says so.
    out = jax.jit(lambda k: adaptive_mean(kernel, x, k, tol=1e-6, max_steps=400, chunk=50,
                                          num_chains=2))(jax.random.key(1))
    assert not bool(out.converged) and int(out.num_steps) == 400


def test_adaptive_mean_bad_arguments():
    from lesample.stopping import adaptive_mean

    _, x, target = _gaussian(3, 2.0)
    kernel = le.mala(target.value_and_grad_H, 0.1, 1.0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`tol`"):
        adaptive_mean(kernel, x, key, tol=0.0, max_steps=100)
    with pytest.raises(ValueError, match="multiple of `chunk`"):
        adaptive_mean(kernel, x, key, tol=0.1, max_steps=105, chunk=10)
    with pytest.raises(TypeError, match="batch_fn"):
        adaptive_mean(kernel, x, key, tol=0.1, max_steps=100, batch_fn=lambda k: None)


# --------------------------------------------------------------------------- automatic scope


def test_auto_scope_keeps_H_convex_on_a_quadratic():
    """f(y) = y^T Q y / 2 with Q's smallest eigenvalue -2: H is convex iff 1/gamma > 2, so
    gamma="auto" with margin m is 1 / (2 (1 + m)); a larger gamma leaves the regime."""
    from lesample.optim._auto_scope import auto_scope_init, auto_scope_update, scope_regime

    rng = np.random.default_rng(0)
    rot, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    Q = jnp.asarray((rot * np.array([-2.0, -0.5, 0.0, 1.0, 3.0, 5.0])) @ rot.T, jnp.float32)
    grad_f = jax.grad(lambda y: 0.5 * y @ Q @ y)
    y = jnp.ones(6)
    state = auto_scope_init(10.0)
    state = auto_scope_update(state, grad_f, y, jax.random.key(0), gamma_max=10.0, margin=0.5)
    np.testing.assert_allclose(float(state.lambda_min), -2.0, rtol=1e-4)
    np.testing.assert_allclose(float(state.gamma), 1 / (2 * 1.5), rtol=1e-4)
    assert int(state.num_hvps) == 6
    lam_H, ok = scope_regime(grad_f, y, state.gamma, jax.random.key(1))
    np.testing.assert_allclose(float(lam_H), 1.5 * 2 - 2, rtol=1e-3)
    assert bool(ok)
    assert not bool(scope_regime(grad_f, y, 0.6, jax.random.key(1))[1])
    # Convex f: the cap gamma_max holds.
    grad_c = jax.grad(lambda y: 0.5 * y @ y)
    s = auto_scope_update(auto_scope_init(3.0), grad_c, y, jax.random.key(0), gamma_max=3.0)
    assert float(s.gamma) == 3.0


def test_auto_scope_tracks_the_double_well_along_a_trajectory():
    """f = (y^2 - 1)^2 / 4 has f'' = 3 y^2 - 1: at y = 0, kappa = 1; moving to y = 1
    (f'' = 2) the running maximum decays by ``decay`` per estimate instead of dropping."""
    from lesample.optim._auto_scope import auto_scope_init, auto_scope_update

    grad_f = jax.grad(lambda y: (0.25 * (y**2 - 1.0) ** 2).sum())
    s = auto_scope_init(5.0)
    s = auto_scope_update(s, grad_f, jnp.zeros(1), jax.random.key(0), gamma_max=5.0, margin=0.0)
    np.testing.assert_allclose(float(s.gamma), 1.0, rtol=1e-5)
    s = auto_scope_update(s, grad_f, jnp.ones(1), jax.random.key(0), gamma_max=5.0, margin=0.0,
                          decay=0.5)
    np.testing.assert_allclose([float(s.neg_curvature), float(s.gamma)], [0.5, 2.0], rtol=1e-5)


def test_entropy_sgd_gamma_auto_uses_the_curvature_rule():
    """entropy_sgd(gamma="auto") on f with lambda_min(Q) = -2 runs the update of
    entropy_sgd(gamma=1/(2 (1 + margin))) with the same keys, and counts its HVPs."""

    rng = np.random.default_rng(1)
    rot, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    Q = jnp.asarray((rot * np.array([-2.0, 1.0, 2.0, 4.0])) @ rot.T, jnp.float32)
    grad_fn = jax.grad(lambda y, b: 0.5 * y @ Q @ y)
    x = jnp.ones(4)
    auto = le.optim.entropy_sgd(0.1, "auto", auto_scope=dict(gamma_max=10.0, margin=0.5),
                                num_steps=5, beta=1e4, step_size=0.01, momentum=0.0)
    fixed = le.optim.entropy_sgd(0.1, 1 / 3, num_steps=5, beta=1e4, step_size=0.01,
                                 momentum=0.0)
    key = jax.random.key(3)
    u_auto, s_auto = auto.update(None, auto.init(x), x, grad_fn=grad_fn, key=key)
    u_fixed, s_fixed = fixed.update(None, fixed.init(x), x, grad_fn=grad_fn, key=key)
    np.testing.assert_allclose(u_auto, u_fixed, rtol=1e-4, atol=1e-6)
    assert int(s_auto.num_grads) == int(s_fixed.num_grads) + 2 * 4  # 4 Lanczos HVPs (d = 4)
    with pytest.raises(ValueError, match="coupling"):
        le.optim.entropy_sgd(0.1, "auto", coupling=1.0)
    with pytest.raises(ValueError, match="auto_scope"):
        le.optim.entropy_sgd(0.1, 1.0, auto_scope={})
    with pytest.raises(ValueError, match="margin"):
        le.optim.entropy_sgd(0.1, "auto", auto_scope=dict(margin=-1.0))


def test_entropy_sgd_with_a_tolerance_stops_its_inner_loop():
    """entropy_sgd(tolerance=...) on a quadratic f: BAOAB (exact on Gaussians) stops when
    the batch-means error of <y> is below tol |x - <y>|, so the gradient (x - <y>)/gamma is
    within 4 tol of the closed form; state.inner_steps holds the L spent (a multiple of
    chunk, below the maximum), num_grads the gradients; a fixed L adds L per update."""
    case, _, _ = _gaussian(5, 10.0, seed=2)
    x = jnp.asarray(case.c + 1.0, jnp.float32)
    grad_f = jax.grad(case.loss)
    lam = np.linalg.eigvalsh(case.A)
    options = dict(num_steps=4000, step_size=float(1 / np.sqrt(lam[-1])), beta=1.0,
                   sampler="baoab", num_chains=4, momentum=0.0,
                   sampler_options=dict(friction=float(2 * np.sqrt(lam[0]))))
    tol = 0.05
    opt = le.optim.entropy_sgd(1.0, 1.0, tolerance=tol, chunk=50, **options)
    updates, state = opt.update(None, opt.init(x), x, grad_fn=lambda y, k: grad_f(y),
                                key=jax.random.key(0))
    truth = np.asarray(x) - case.mean(np.asarray(x))  # gamma (x - E[y]) / gamma, eta = 1
    err = np.linalg.norm(-np.asarray(updates) - truth) / np.linalg.norm(truth)
    assert err <= 4 * tol
    steps = int(state.inner_steps)
    assert 200 <= steps < 4000 and steps % 50 == 0
    assert int(state.num_grads) == 4 * steps + 4  # BAOAB's initial gradient per chain
    fixed = le.optim.entropy_sgd(1.0, 1.0, **(options | dict(num_steps=40)))
    _, s = fixed.update(None, fixed.init(x), x, grad_fn=lambda y, k: grad_f(y),
                        key=jax.random.key(0))
    assert int(s.inner_steps) == 40
    with pytest.raises(ValueError, match="`tolerance`"):
        le.optim.entropy_sgd(1.0, 1.0, tolerance=0.0)
    with pytest.raises(ValueError, match="multiple of `chunk`"):
        le.optim.entropy_sgd(1.0, 1.0, tolerance=0.1, num_steps=20, chunk=6)
    with pytest.raises(ValueError, match="burn_in=0"):
        le.optim.entropy_sgd(1.0, 1.0, tolerance=0.1, num_steps=40, burn_in=5)


def test_hj_gamma_auto_uses_the_curvature_rule():
    """hj(gamma="auto") on f with lambda_min(Q) = -2 runs hj(gamma=1/(2 (1 + margin)))'s
    update with the same keys, and counts its Lanczos HVPs as two gradients each."""
    rng = np.random.default_rng(1)
    rot, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    Q = jnp.asarray((rot * np.array([-2.0, 1.0, 2.0, 4.0])) @ rot.T, jnp.float32)
    grad_fn = jax.grad(lambda y, b: 0.5 * y @ Q @ y)
    x = jnp.ones(4)
    key = jax.random.key(3)
    for form in ("rho", "rho2"):
        auto = le.optim.hj(0.1, "auto", auto_scope=dict(gamma_max=10.0, margin=0.5),
                           step_size=0.01, form=form, momentum=0.0)
        fixed = le.optim.hj(0.1, 1 / 3, step_size=0.01, form=form, momentum=0.0)
        u_auto, s_auto = auto.update(None, auto.init(x), x, grad_fn=grad_fn, key=key)
        u_fixed, s_fixed = fixed.update(None, fixed.init(x), x, grad_fn=grad_fn, key=key)
        np.testing.assert_allclose(u_auto, u_fixed, rtol=1e-4, atol=1e-6)
        assert int(s_auto.num_grads) == int(s_fixed.num_grads) + 2 * 4
        assert int(s_auto.inner_steps) == int(s_fixed.inner_steps) == 5
    with pytest.raises(ValueError, match="coupling"):
        le.optim.hj(0.1, "auto", coupling=1.0)
