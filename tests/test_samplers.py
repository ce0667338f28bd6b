"""Stationary laws of the samplers (docs/samplers.md), their bias orders, the fast noise, and the
driver's layout and divergence handling.

Gaussian ``rho`` with precision ``beta A`` (``A = Q + I/gamma``, condition number 100, d = 2
and d = 50). Moments are checked in the eigenbasis ``u_k`` of ``A``: the coordinates
``z_k = u_k . (y - m)`` have mean 0 and are uncorrelated with variances ``v_k``, which are
``1 / (beta lambda_k)`` under ``rho`` and ``1 / (beta lambda_k (1 - h lambda_k / 2))`` for
ULA's stationary law (the recursion ``z' = (1 - h lambda) z + sqrt(2h/beta) xi`` has
stationary variance ``2h / (beta (2 h lambda - h^2 lambda^2))``, whatever the law of ``xi``
as long as it has mean 0 and variance 1). Each chain average of ``z_k`` and ``z_k^2 / v_k - 1``
must lie within ``Z_SE`` Monte Carlo standard errors (ArviZ's MCSE over chains x draws) of 0.
``Z_SE = 5``: with ``2d`` checks per sampler, a correct sampler fails with probability below
``2d * 5.7e-7`` (two-sided normal tail), and the issue asks Metropolis samplers to be unbiased
to within 5 standard errors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import lesample as le
from lesample import diagnostics
from lesample.noise import noise_like
from lesample.samplers import DivergenceError, DivergenceWarning, build_sampler, sample

Z_SE = 5.0
EPS32 = float(np.finfo(np.float32).eps)
CASES = {d: le.GaussianCase.from_condition_number(d, 100.0, gamma=1.0, beta=1.0, seed=d)
         for d in (2, 50)}  # eigenvalues of A spread over [1, 100]


def anchor(case):
    return np.asarray(np.float32(case.c + 1.0), np.float64)


def eigen_coordinates(case, draws):
    """``z = U^T (y - m)`` of draws ``(chains, draws, d)``, and the eigenvalues of ``A``."""
    lam, U = np.linalg.eigh(case.A)
    return (np.asarray(draws, np.float64) - case.mean(anchor(case))) @ U, lam


def z_scores(z, var):
    """Standardised errors of the first and (normalised) second moments, each shape (d,)."""
    out = []
    for stat in (z, z**2 / var - 1.0):
        out.append(stat.mean((0, 1)) / diagnostics.mcse_mean(stat))
    return np.concatenate(out)


def draws_of(case, sampler, step_size, *, num_chains, num_steps, burn_in, thin=1, **options):
    target = le.local_entropy_target(case.loss, jnp.asarray(anchor(case), jnp.float32),
                                     case.gamma, case.beta)
    algorithm = build_sampler(sampler, target, step_size, **options)
    trace = sample(algorithm, jax.random.key(7), target.x, num_steps=num_steps,
                   num_chains=num_chains, burn_in=burn_in, thin=thin)
    assert not bool(np.asarray(trace.diverged).any())
    return trace


# ULA's step puts h lambda_max at 1: its top-direction variance is twice the true one.
# BAOAB's larger step h sqrt(lambda_max) = 1.5 is beyond ULA's stability limit (h < 0.02).
# Burn-in is >= 10 relaxation times of the slowest direction (1/(h lambda_min) steps for the
# overdamped kernels, about 2/friction time units for BAOAB), so the start is forgotten to
# e^-10 of its offset.
EXACT = {
    "baoab-h0.15": ("baoab", 0.15, dict(num_chains=32, num_steps=8000, burn_in=400, thin=2,
                                         friction=1.0)),
    "baoab-h0.05-rademacher": ("baoab", 0.05, dict(num_chains=32, num_steps=16000, burn_in=600,
                                                    thin=4, friction=1.0, noise="rademacher")),
    "mala": ("mala", 0.01, dict(num_chains=32, num_steps=24000, burn_in=2000, thin=4)),
    # A trajectory length, not a fixed leapfrog count: from this start NumPyro's dual averaging
    # with 16 fixed steps drives the step to underflow (3 of 4 chains never move; NumPyro's own
    # MCMC does the same), which `sample` now flags as stuck.
    "hmc": ("hmc", 0.1, dict(num_chains=4, num_steps=1300, burn_in=300, num_warmup=300,
                             trajectory_length=1.5)),
    "nuts": ("nuts", 0.1, dict(num_chains=4, num_steps=1300, burn_in=300, num_warmup=300)),
}


@pytest.mark.parametrize("dim", [2, 50])
@pytest.mark.parametrize("name", list(EXACT))
def test_exact_samplers_match_the_gaussian_moments(name, dim):
    case = CASES[dim]
    sampler, h, kw = EXACT[name]
    trace = draws_of(case, sampler, h, **kw)
    z, lam = eigen_coordinates(case, trace.draws)
    assert np.all(np.abs(z_scores(z, 1.0 / (case.beta * lam))) <= Z_SE)


@pytest.mark.parametrize("dim", [2, 50])
@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_ula_stationary_covariance_is_the_biased_formula(noise, dim):
    case = CASES[dim]
    h = 0.01
    trace = draws_of(case, "ula", h, num_chains=32, num_steps=24000, burn_in=2000, thin=4,
                     noise=noise)
    z, lam = eigen_coordinates(case, trace.draws)
    biased = 1.0 / (case.beta * lam * (1.0 - h * lam / 2.0))
    assert np.all(np.abs(z_scores(z, biased)) <= Z_SE)
    # The check has the power to see the bias: the exact variances are rejected.
    assert np.abs(z_scores(z, 1.0 / (case.beta * lam))).max() > Z_SE


# ---------------------------------------------------------------------------------------------
# Bias order on a non-Gaussian 1-D target: H(y) = 2 log cosh(2y) + sin(3y) + (y - x)^2 / 2.
# E_rho[y] by quadrature; the time averages of many independent chains estimate the mean of the
# chain's stationary law, whose bias is ~ c h^p. The least-squares slope of log|bias| on log h
# over three steps spanning a factor 2 gives p. The test decides the order: p must round to
# the expected integer (|p - order| < 1/2), and p's own Monte Carlo error (delta method through
# the slope) must be below 1/8, so that the rounding is decided by >= 4 standard errors when
# p sits at the expected order. Chain counts are set so; the runs last 20 time units of
# burn-in (>= 10 relaxation times of this target) and then `duration` time units. BAOAB's bias
# is small (it is exact on the Gaussian part), hence its larger steps (all below its stability
# limit 2/sqrt(max H'') ~ 0.47) and more chains.


def rugged(y):
    return jnp.sum(2.0 * jnp.log(jnp.cosh(2.0 * y)) + jnp.sin(3.0 * y))


def rugged_mean(x: float, beta: float) -> float:
    H = lambda y: 2 * np.log(np.cosh(2 * y)) + np.sin(3 * y) + (y - x) ** 2 / 2  # noqa: E731
    shift = min(H(y) for y in np.linspace(-5, 5, 2001))
    w = lambda y: np.exp(-beta * (H(y) - shift))  # noqa: E731
    z = integrate.quad(w, -12, 12, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
    return integrate.quad(lambda y: y * w(y), -12, 12, epsabs=1e-14, epsrel=1e-13,
                          limit=200)[0] / z


@pytest.mark.parametrize(("sampler", "steps", "order", "num_chains", "duration", "options"), [
    ("ula", (0.0125, 0.025, 0.05), 1.0, 4096, 50, {}),
    ("baoab", (0.15, 0.15 * math.sqrt(2), 0.3), 2.0, 65536, 200, dict(friction=1.0)),
])
def test_bias_order_on_a_non_gaussian_target(sampler, steps, order, num_chains, duration,
                                             options):
    x, beta = 0.5, 1.0
    truth = rugged_mean(x, beta)
    target = le.local_entropy_target(rugged, jnp.array([x], jnp.float32), 1.0, beta)
    bias, se = [], []
    for h in steps:
        burn_in = round(20 / h)
        trace = sample(build_sampler(sampler, target, h, **options), jax.random.key(2),
                         target.x, num_steps=burn_in + round(duration / h),
                         num_chains=num_chains, burn_in=burn_in, estimator="uniform",
                         keep_draws=False)
        means = np.asarray(trace.estimate, np.float64)[:, 0]
        bias.append(means.mean() - truth)
        se.append(means.std(ddof=1) / math.sqrt(means.size))
    bias, se = np.array(bias), np.array(se)
    logh = np.log(steps)
    weights = (logh - logh.mean()) / ((logh - logh.mean()) ** 2).sum()
    p = weights @ np.log(np.abs(bias))
    p_se = math.sqrt(((weights * se / np.abs(bias)) ** 2).sum())
    assert p_se < 1 / 8, (p_se, bias, se)
    assert abs(p - order) < 1 / 2, (p, bias, se)


# ---------------------------------------------------------------------------------------------
# The fast noise: the moments the schemes use.


def test_rademacher_noise_has_the_moments_the_schemes_need():
    n = 2_000_003  # not a multiple of 32: the last word is partly used
    xi = np.asarray(noise_like(jax.random.key(0), jnp.zeros(n), "rademacher"), np.float64)
    assert set(np.unique(xi)) == {-1.0, 1.0}
    # Mean 0, variance 1, third moment 0 exactly in law; the sample mean of +-1 has sd 1/sqrt(n).
    z = stats.norm.ppf(1 - 1e-6)
    assert abs(xi.mean()) <= z / math.sqrt(n)
    assert abs((xi**3).mean()) <= z / math.sqrt(n)  # xi^3 = xi
    # Independence between neighbours (bits of one word, and across words): lag-k products
    # have mean 0 and sd 1/sqrt(n - k).
    for k in (1, 2, 31, 32, 33):
        assert abs((xi[k:] * xi[:-k]).mean()) <= z / math.sqrt(n - k)
    # Per leaf of a pytree: independent draws, float dtypes kept.
    tree = noise_like(jax.random.key(1), {"a": jnp.zeros((64, 64)), "b": jnp.zeros(4096)},
                       "rademacher")
    a, b = np.asarray(tree["a"]).ravel(), np.asarray(tree["b"])
    assert abs((a * b).mean()) <= z / math.sqrt(4096)
    assert tree["a"].dtype == jnp.float32


# ---------------------------------------------------------------------------------------------
# Driver: layout, burn-in and thinning, divergence.

AFFINE = le.GaussianCase.from_condition_number(3, 10.0, gamma=1.0, beta=50.0, seed=0)


def affine_target():
    return le.local_entropy_target(AFFINE.loss, jnp.asarray(AFFINE.c, jnp.float32),
                                   AFFINE.gamma, AFFINE.beta)


def test_draws_are_the_kept_states_of_the_step_by_step_chain():
    target = affine_target()
    algorithm = build_sampler("ula", target, 0.05)
    key = jax.random.key(5)
    trace = sample(algorithm, key, target.x, num_steps=13, num_chains=2, burn_in=3, thin=5)
    assert trace.draws.shape == (2, 2, 3)
    assert trace.info.diverged.shape == (2, 13) and int(trace.num_grads.sum()) == 26
    # Replay chain 1 by hand with the driver's key schedule.
    k_init, k_burn, k_main = jax.random.split(jax.random.split(key, 2)[1], 3)
    state = algorithm.init(target.x, k_init)
    keys = list(jax.random.split(k_burn, 3)) + list(jax.random.split(k_main, 10))
    states = []
    for k in keys:
        state, _ = algorithm.step(k, state)
        states.append(np.asarray(state.position))
    kept = np.stack([states[3 + 4], states[3 + 9]])  # every 5th state after burn-in
    np.testing.assert_allclose(np.asarray(trace.draws[1]), kept, rtol=0, atol=1e-5)


def test_divergence_raises_or_is_reported_and_left_out_of_the_mean():
    target = affine_target()
    lam_max = np.linalg.eigvalsh(AFFINE.A).max()
    unstable = build_sampler("ula", target, 3.0 / lam_max)  # |1 - h lambda_max| = 2
    with pytest.raises(DivergenceError, match="step size"):
        sample(unstable, jax.random.key(0), target.x, num_steps=2000, num_chains=2)
    # One chain starts at a non-finite-bound distance: with "warn" it is flagged and excluded.
    stable = build_sampler("ula", target, 0.05)
    starts = jnp.stack([target.x, jnp.full(3, 3e38, jnp.float32)])
    with pytest.warns(DivergenceWarning, match="1 of 2"):
        trace = sample(stable, jax.random.key(0), starts, num_steps=50, num_chains=2,
                       stacked=True, estimator="uniform", on_divergence="warn")
    assert np.asarray(trace.diverged).tolist() == [False, True]
    mean = np.asarray(le.chain_mean(trace.estimate, trace.diverged))
    np.testing.assert_array_equal(mean, np.asarray(trace.estimate[0]))


@pytest.mark.parametrize("estimator", ["uniform", "exponential", "last"])
@pytest.mark.parametrize("kernel", ["ula", "sgld", "hj"])
def test_position_only_chains_diverge_iff_their_estimate_is_non_finite(kernel, estimator):
    """What the optimisers' inner loop relies on to skip the per-step divergence test
    (``SamplingAlgorithm.position_only``). At ``|1 - h lambda_max| = 2`` the distance to
    the mean doubles each step: starts at 1 and 1e10 stay finite for 40 steps, 1e37 overflows
    float32 within a few; the run is cut so that the start at 1e26 overflows at its last step
    (the hardest case: one non-finite state, in the last estimator update)."""
    target = affine_target()
    lam_max = np.linalg.eigvalsh(AFFINE.A).max()
    algorithm = build_sampler(kernel, target, 3.0 / lam_max)
    assert algorithm.position_only
    v = np.linalg.eigh(AFFINE.A)[1][:, -1]  # the unstable direction
    starts = jnp.asarray(np.asarray(target.x)[None] + np.outer([1.0, 1e10, 1e26, 1e37], v),
                         jnp.float32)

    def run(num_steps):
        return le.samplers.run_chains(algorithm, jax.random.key(0), starts,
                                      num_steps=num_steps, num_chains=4, stacked=True,
                                      estimator=estimator, keep_draws=False)

    last = int(np.argmax(np.asarray(run(60).info.diverged[2])))  # 1e26's first overflow
    trace = run(last + 1)
    assert last + 1 >= 40 and np.asarray(trace.diverged).tolist() == [False, False, True, True]
    assert bool(trace.info.diverged[2, -1]) and not bool(trace.info.diverged[2, :-1].any())
    flagged = ~jax.vmap(le.tree.all_finite)(trace.estimate)
    np.testing.assert_array_equal(np.asarray(flagged), np.asarray(trace.diverged))


def test_all_finite_finds_any_nan_or_inf():
    clean = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4), "n": jnp.arange(3), "e": jnp.zeros(0)}
    assert bool(le.tree.all_finite(clean)) and bool(le.tree.all_finite({}))
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        for index in ((0, 0), (2, 3), (1, 2)):
            tree = dict(clean, w=clean["w"].at[index].set(bad))
            assert not bool(jax.jit(le.tree.all_finite)(tree)), (bad, index)


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    (dict(num_steps=0), ValueError, "num_steps"),
    (dict(num_steps=10, burn_in=10), ValueError, "burn_in"),
    (dict(num_steps=10, thin=3), ValueError, "thin"),
    (dict(num_steps=10, on_divergence="ignore"), ValueError, "on_divergence"),
    (dict(num_steps=10, unroll=0), ValueError, "unroll"),
    (dict(num_steps=10, unroll=False), ValueError, "unroll"),
    (dict(num_steps=10, batches=jnp.zeros((10, 2))), TypeError, "batches"),
])
def test_driver_bad_input(kwargs, error, name):
    target = affine_target()
    algorithm = build_sampler("mala", target, 0.05)
    with pytest.raises(error, match=name):
        sample(algorithm, jax.random.key(0), target.x, **kwargs)


def test_unknown_sampler_name_is_rejected():
    with pytest.raises(ValueError, match="`sampler`"):
        build_sampler("langevin", affine_target())


# ---------------------------------------------------------------------------------------------
# Argument checks of the kernel factories (issue 16 item 5) and the kernel protocol.


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, -math.inf])
@pytest.mark.parametrize("factory", ["ula", "baoab", "mala"])
def test_a_bad_beta_is_a_value_error_naming_beta(factory, beta):
    """``beta = 0`` used to raise ZeroDivisionError, a negative or NaN one a DivergenceError
    telling to lower the step size."""
    target = affine_target()
    grad = target.value_and_grad_H if factory == "mala" else target.grad_H
    with pytest.raises(ValueError, match="`beta`"):
        getattr(le, factory)(grad, 0.1, beta)


def test_mala_refuses_an_infinite_beta_that_ula_accepts():
    target = affine_target()
    with pytest.raises(ValueError, match="`beta`"):
        le.mala(target.value_and_grad_H, 0.1, math.inf)
    assert le.ula(target.grad_H, 0.1, math.inf).position_only


@pytest.mark.parametrize("factory", ["ula", "baoab", "hj"])
def test_a_value_and_grad_function_given_for_a_gradient_is_named(factory):
    target = affine_target()
    args = (0.1,) if factory == "hj" else (0.1, 1.0)
    algorithm = getattr(le, factory)(target.value_and_grad_H, *args)
    with pytest.raises(TypeError, match="value_and_grad"):
        le.run_chains(algorithm, jax.random.key(0), target.x, num_steps=3)


def test_mala_given_a_gradient_for_value_and_grad_says_what_it_expected():
    target = affine_target()
    algorithm = le.mala(target.grad_H, 0.1, 1.0)
    with pytest.raises(TypeError, match=r"pair \(H\(y\), grad_y H\(y\)\)"):
        le.run_chains(algorithm, jax.random.key(0), target.x, num_steps=3)


@pytest.mark.parametrize("step_size", [0.0, -0.1, math.nan, "0.1"])
def test_a_bad_step_size_names_step_size(step_size):
    with pytest.raises((ValueError, TypeError), match="`step_size`"):
        le.ula(affine_target().grad_H, step_size, 1.0)


@pytest.mark.parametrize(
    ("name", "minibatch", "init_grads", "position_only"),
    [("ula", True, 0, True), ("sgld", True, 0, True), ("hj", True, 0, True),
     ("baoab", True, 1, False), ("mala", False, 1, False), ("hmc", False, 1, False),
     ("nuts", False, 1, False)],
)
def test_kernel_properties(name, minibatch, init_grads, position_only):
    """What consumers read from a kernel instead of tables of sampler names."""
    algorithm = build_sampler(name, affine_target(), 0.1)
    assert (algorithm.minibatch, algorithm.init_grads, algorithm.position_only) == (
        minibatch, init_grads, position_only)
    if name not in ("hmc", "nuts"):  # one gradient per transition
        trace = le.run_chains(algorithm, jax.random.key(0), affine_target().x, num_steps=2)
        assert int(trace.num_grads.sum()) == 2


def test_deprecated_names_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="DEFAULT_ESTIMATORS"):
        assert le.SAMPLERS == le.DEFAULT_ESTIMATORS
    with pytest.warns(DeprecationWarning, match="KERNELS"):
        assert le.samplers.SAMPLERS == le.DEFAULT_ESTIMATORS
    import lesample.noise

    with pytest.warns(DeprecationWarning, match="noise_like"):
        old = lesample.noise.normal_like
    key, tree = jax.random.key(3), jnp.zeros(100)
    np.testing.assert_array_equal(old(key, tree, "rademacher"), le.noise.signs_like(key, tree))
    np.testing.assert_array_equal(old(key, tree), le.noise.gaussian_like(key, tree))
